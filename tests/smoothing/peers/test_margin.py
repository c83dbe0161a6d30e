"""MarginSmoothing (MbLS) against a port of the authors' LogitMarginL1 (by-liu/MbLS
calibrate/losses/logit_margin_l1.py): values and gradients, K from 2 to 1000."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import MarginSmoothing

CLASSES = [2, 10, 1000]


def reference_mbls(x, y, margin=10.0, alpha=0.1, *, kept):
    """The authors' forward on the counted rows: mean CE + alpha * mean relu(diff - m)."""
    x, y = kept(x, y)
    loss_ce = F.cross_entropy(x, y)
    max_values = x.max(dim=1).values.unsqueeze(dim=1).repeat(1, x.shape[1])
    diff = max_values - x
    loss_margin = F.relu(diff - margin).mean()
    return loss_ce + alpha * loss_margin


def built(k, **hparams):
    strategy = MarginSmoothing(**hparams)
    strategy.setup(num_classes=k)
    return strategy


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize(("margin", "alpha", "scale"), [(10.0, 0.1, 8.0), (2.0, 1.0, 3.0)])
def test_matches_the_reference_in_float64(batch, check_against, kept, k, margin, alpha, scale):
    x, y = batch(k, scale=scale)
    check_against(
        built(k, margin=margin, alpha=alpha),
        lambda a, b: reference_mbls(a, b, margin, alpha, kept=kept),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("k", CLASSES)
def test_tied_maxima_match_the_reference(check_against, kept, k):
    g = torch.Generator().manual_seed(k)
    x = torch.randint(0, 4, (16, k), generator=g).double() * 8  # distances 0..24, many ties
    y = torch.randint(0, k, (16,), generator=g)
    y[3] = -100
    check_against(
        built(k), lambda a, b: reference_mbls(a, b, kept=kept), x, y, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    ref = lambda a, b: reference_mbls(a, b, kept=kept)  # noqa: E731
    x, y = batch(k, scale=8.0, dtype=torch.float32, seed=1)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-6)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-4)


def test_within_the_margin_it_is_cross_entropy(batch):
    x, y = batch(10, scale=1.0)  # every distance far below 10
    strategy = built(10)
    torch.testing.assert_close(strategy(x, y), F.cross_entropy(x, y))
    assert float(strategy.log_values()["smoothing/penalty"]) == 0.0


def test_penalty_figure_is_the_unweighted_mean(batch, kept):
    x, y = batch(10, scale=8.0)
    strategy = built(10, alpha=0.3)
    loss = strategy(x, y)
    xk, yk = kept(x, y)
    penalty = strategy.log_values()["smoothing/penalty"]
    torch.testing.assert_close(loss, F.cross_entropy(xk, yk) + 0.3 * penalty.double())
    assert strategy.log_values()["smoothing/alpha"] == 0.3
