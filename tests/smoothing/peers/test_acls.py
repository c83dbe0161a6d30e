"""ACLSmoothing against a port of the authors' ACLS (cvlab-yonsei/ACLS
calibrate/losses/acls.py): values and gradients, K from 2 to 1000, ties at the max."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import ACLSmoothing

CLASSES = [2, 10, 1000]


def reference_acls(x, y, pos_lambda=1.0, neg_lambda=0.1, alpha=0.1, margin=10.0, *, kept):
    """The authors' forward (``get_reg``) on the counted rows."""
    inputs, targets = kept(x, y)
    loss_ce = F.cross_entropy(inputs, targets)
    max_values, _ = inputs.max(dim=1)
    max_values = max_values.unsqueeze(dim=1).repeat(1, inputs.shape[1])
    indicator = (max_values.clone().detach() == inputs.clone().detach()).to(inputs.dtype)
    batch_size, num_classes = inputs.size()
    num_pos = batch_size * 1.0
    num_neg = batch_size * (num_classes - 1.0)
    neg_dist = max_values.clone().detach() - inputs
    pos_dist_margin = F.relu(max_values - margin)
    neg_dist_margin = F.relu(neg_dist - margin)
    pos = indicator * pos_dist_margin**2
    neg = (1.0 - indicator) * (neg_dist_margin**2)
    reg = pos_lambda * (pos.sum() / num_pos) + neg_lambda * (neg.sum() / num_neg)
    return loss_ce + alpha * reg


def built(k, **hparams):
    strategy = ACLSmoothing(**hparams)
    strategy.setup(num_classes=k)
    return strategy


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize(
    "hparams",
    [{}, {"alpha": 0.5, "pos_lambda": 0.3, "neg_lambda": 2.0, "margin": 4.0}],
)
def test_matches_the_reference_in_float64(batch, check_against, kept, k, hparams):
    x, y = batch(k, scale=8.0)
    x[0] += 12.0  # a row whose top logit exceeds the margin: the positive term is active
    check_against(
        built(k, **hparams),
        lambda a, b: reference_acls(a, b, **hparams, kept=kept),
        x,
        y,
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("k", CLASSES)
def test_tied_maxima_match_the_reference(check_against, kept, k):
    g = torch.Generator().manual_seed(k)
    x = torch.randint(0, 4, (16, k), generator=g).double() * 8 + 4  # top 28 > margin, ties
    y = torch.randint(0, k, (16,), generator=g)
    y[3] = -100
    check_against(
        built(k), lambda a, b: reference_acls(a, b, kept=kept), x, y, rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    ref = lambda a, b: reference_acls(a, b, kept=kept)  # noqa: E731
    x, y = batch(k, scale=8.0, dtype=torch.float32, seed=1)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-5)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=2)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-2)


def test_within_the_margin_it_is_cross_entropy(batch):
    x, y = batch(10, scale=1.0)
    strategy = built(10)
    torch.testing.assert_close(strategy(x, y), F.cross_entropy(x, y))
    assert float(strategy.log_values()["smoothing/penalty"]) == 0.0
