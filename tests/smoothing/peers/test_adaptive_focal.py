"""AdaptiveFocalLoss (FLSD-53) against a port of the authors' per-sample loop (by-liu/MbLS
calibrate/losses/focal_loss_adaptive_gamma.py, from torrvision/focal_calibration)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import AdaptiveFocalLoss, FocalLoss

CLASSES = [2, 10, 1000]
GAMMA_DIC = {0.2: 5.0, 0.5: 3.0}  # the reference's module-level table


def reference_flsd(x, y, gamma=3.0, *, kept):
    """The authors' forward, Python loop over ``.item()`` included."""
    x, y = kept(x, y)
    logpt = F.log_softmax(x, dim=1).gather(1, y.view(-1, 1)).view(-1)
    pt = logpt.exp()
    gamma_list = []
    for i in range(pt.shape[0]):
        pt_sample = pt[i].item()
        if pt_sample >= 0.5:
            gamma_list.append(gamma)
            continue
        for key in sorted(GAMMA_DIC):
            if pt_sample < key:
                gamma_list.append(GAMMA_DIC[key])
                break
    g = torch.tensor(gamma_list, dtype=x.dtype)
    return (-1 * (1 - pt) ** g * logpt).mean()


def built(k, **hparams):
    strategy = AdaptiveFocalLoss(**hparams)
    strategy.setup(num_classes=k)
    return strategy


def with_target_probabilities(pts, k):
    """Logits whose softmax gives the target (class 0) exactly probability pt."""
    pts = torch.tensor(pts, dtype=torch.float64)
    x = torch.zeros(len(pts), k, dtype=torch.float64)
    x[:, 0] = torch.log(pts * (k - 1) / (1 - pts))
    return x, torch.zeros(len(pts), dtype=torch.long)


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_matches_the_reference_in_float64(batch, check_against, kept, k, scale):
    x, y = batch(k, scale=scale)
    check_against(
        built(k), lambda a, b: reference_flsd(a, b, kept=kept), x, y, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("k", [2, 10])
def test_every_gamma_range_matches_the_reference(check_against, kept, k):
    # p_t on each side of both cut-offs (0.2, 0.5), 0.01 away: p_t is rebuilt from float64
    # logits (error ~1e-16), so no kernel can move a value across. A value placed exactly
    # on a cut-off lands on either side with the exp/log kernel in use.
    pts = [0.01, 0.1, 0.19, 0.21, 0.3, 0.49, 0.51, 0.9, 0.999]
    x, y = with_target_probabilities(pts, k)
    y[3] = -100
    strategy = built(k)
    check_against(
        strategy, lambda a, b: reference_flsd(a, b, kept=kept), x, y, rtol=1e-9, atol=1e-12
    )
    strategy(x, y)
    counted = [p for i, p in enumerate(pts) if i != 3]
    gammas = [5.0 if p < 0.2 else 3.0 for p in counted]
    values = strategy.log_values()
    assert math.isclose(
        float(values["smoothing/gamma_mean"]), sum(gammas) / len(gammas), rel_tol=1e-6
    )
    low = sum(p < 0.2 for p in counted)
    assert math.isclose(float(values["smoothing/low_fraction"]), low / len(counted), rel_tol=1e-6)


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    x, y = batch(k, dtype=torch.float32, seed=1)
    ref = lambda a, b: reference_flsd(a, b, kept=kept)  # noqa: E731
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-6)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-5)


def test_each_gamma_is_configurable():
    x, y = with_target_probabilities([0.1, 0.3, 0.7], 4)
    strategy = built(4, gamma=1.0, gamma_low=6.0, gamma_mid=2.0)
    rows = strategy(x, y, reduction="none")
    for i, gamma in enumerate([6.0, 2.0, 1.0]):
        focal = FocalLoss(gamma=gamma)
        focal.setup(num_classes=4)
        torch.testing.assert_close(rows[i], focal(x[i : i + 1], y[i : i + 1]))


def test_confident_rows_are_focal_loss_with_gamma():
    x, y = with_target_probabilities([0.6, 0.8, 0.95], 10)
    focal = FocalLoss(gamma=3.0)
    focal.setup(num_classes=10)
    torch.testing.assert_close(built(10)(x, y), focal(x, y))
