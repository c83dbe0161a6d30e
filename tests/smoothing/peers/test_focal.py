"""FocalLoss against a port of the authors' focal loss (by-liu/MbLS
calibrate/losses/focal_loss.py): values and gradients, K from 2 to 1000."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import FocalLoss
from adaptls.smoothing.driver import StrategyDriver

CLASSES = [2, 10, 1000]


def reference_focal(x, y, gamma, size_average=True, *, kept):
    """The authors' forward: ignored rows dropped, -(1 - pt)^gamma * logpt."""
    x, y = kept(x, y)
    logpt = F.log_softmax(x, dim=1).gather(1, y.view(-1, 1)).view(-1)
    pt = logpt.exp()
    loss = -1 * (1 - pt) ** gamma * logpt
    return loss.mean() if size_average else loss.sum()


def built(k, **hparams):
    strategy = FocalLoss(**hparams)
    strategy.setup(num_classes=k)
    return strategy


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_the_reference_in_float64(batch, check_against, kept, k, gamma, reduction):
    strategy = built(k, gamma=gamma)
    x, y = batch(k)
    check_against(
        lambda a, b: strategy(a, b, reduction=reduction),
        lambda a, b: reference_focal(a, b, gamma, reduction == "mean", kept=kept),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("k", CLASSES)
def test_float32_matches_the_float64_reference(batch, check_against, kept, k):
    x, y = batch(k, dtype=torch.float32, seed=1)
    check_against(
        built(k), lambda a, b: reference_focal(a, b, 3.0, kept=kept), x, y, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("k", CLASSES)
def test_extreme_logits_stay_finite_and_match(batch, check_against, kept, k):
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)
    check_against(
        built(k), lambda a, b: reference_focal(a, b, 3.0, kept=kept), x, y, rtol=1e-5, atol=1e-5
    )


def test_gamma_below_one_has_no_nan_at_certainty(kept):
    """p_t = 1 exactly: the reference's gradient is 0 * inf = NaN for gamma < 1; here the
    row contributes 0 with a zero gradient."""
    x = torch.tensor([[1e4, 0.0, 0.0], [0.5, 1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    leaf = x.clone().requires_grad_()
    loss = built(3, gamma=0.5)(leaf, y, reduction="none")
    loss.sum().backward()
    assert torch.isfinite(leaf.grad).all() and (leaf.grad[0] == 0).all() and loss[0] == 0
    ref = x.clone().requires_grad_()
    reference_focal(ref, y, 0.5, size_average=False, kept=kept).backward()
    assert not torch.isfinite(ref.grad[0]).all()  # why the clamp exists
    torch.testing.assert_close(loss[1], reference_focal(x[1:], y[1:], 0.5, kept=kept))


def test_gamma_zero_is_cross_entropy(batch):
    x, y = batch(10)
    torch.testing.assert_close(built(10, gamma=0.0)(x, y), F.cross_entropy(x, y))


def test_another_ignore_index(batch):
    x, y = batch(5, ignored=())
    strategy = FocalLoss(ignore_index=0)
    strategy.setup(num_classes=5)
    keep = y != 0
    torch.testing.assert_close(strategy(x, y), built(5)(x[keep], y[keep]))


def test_schedule_scales_gamma(batch):
    x, y = batch(10)
    scheduled = FocalLoss(gamma=3.0, schedule={"name": "step", "milestones": [1], "gamma": 0.5})
    scheduled.setup(num_classes=10)
    StrategyDriver(scheduled).set_epoch(1, max_epochs=4)
    torch.testing.assert_close(scheduled(x, y), built(10, gamma=1.5)(x, y))
    assert scheduled.log_values() == {"smoothing/gamma": 1.5}
