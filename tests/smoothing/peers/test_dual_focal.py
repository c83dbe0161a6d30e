"""DualFocalLoss against a port of the authors' loss (Linwei94/ICML2023-DualFocalLoss
dual_focal_loss.py): values and gradients, K from 2 to 1000."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import DualFocalLoss

CLASSES = [2, 10, 1000]


def reference_dual_focal(x, y, gamma=5.0, size_average=True, *, kept):
    """The authors' forward on the counted rows (p_j by a mask and topk)."""
    x, y = kept(x, y)
    target = y.view(-1, 1)
    logp_k = F.log_softmax(x, dim=1)
    softmax_logits = logp_k.exp()
    logp_k = logp_k.gather(1, target).view(-1)
    p_k = logp_k.exp()
    p_j_mask = torch.lt(softmax_logits, p_k.reshape(p_k.shape[0], 1)) * 1
    p_j = torch.topk(p_j_mask * softmax_logits, 1)[0].squeeze(1)
    loss = -1 * (1 - p_k + p_j) ** gamma * logp_k
    return loss.mean() if size_average else loss.sum()


def built(k, **hparams):
    strategy = DualFocalLoss(**hparams)
    strategy.setup(num_classes=k)
    return strategy


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("gamma", [1.0, 2.3, 5.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_the_reference_in_float64(batch, check_against, kept, k, gamma, reduction):
    x, y = batch(k, scale=2.0)
    check_against(
        lambda a, b: built(k, gamma=gamma)(a, b, reduction=reduction),
        lambda a, b: reference_dual_focal(a, b, gamma, reduction == "mean", kept=kept),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    ref = lambda a, b: reference_dual_focal(a, b, kept=kept)  # noqa: E731
    x, y = batch(k, dtype=torch.float32, seed=1)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-6)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-5)


def test_runner_up_is_the_largest_probability_below_the_target():
    x = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3]]))
    y = torch.tensor([0, 0, 2])  # runner-up 0.3; none below (0); 0.1 below 0.3
    strategy = built(3, gamma=2.0)
    rows = strategy(x, y, reduction="none")
    p_y, p_j = torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.3, 0.0, 0.1])
    torch.testing.assert_close(rows, -((1 - p_y + p_j) ** 2) * p_y.log())
    torch.testing.assert_close(strategy.log_values()["smoothing/runner_up"], p_j.mean())


def test_gamma_zero_is_cross_entropy(batch):
    x, y = batch(10)
    torch.testing.assert_close(built(10, gamma=0.0)(x, y), F.cross_entropy(x, y))
