"""The two smoothing losses of translation against their authors' formulas, ported.

- fairseq's ``label_smoothed_nll_loss`` (fairseq/criterions/label_smoothed_cross_entropy.py):
  ``smoothing=uniform convention=fairseq``;
- MLS's ``label_smoothed_nll_loss`` with ``mask_labels`` (chenllliang/MLS,
  fairseq/criterions/masked_label_smoothed_cross_entropy.py): ``smoothing=masked``, its
  mask being the classes with training targets.

Both ports sum over the non-padding rows; the strategies' mean is that sum over the
number of rows counted. float64 throughout, compared at 1e-12 (the same terms summed in
another order). The fused linear path is compared too (``driver.linear_loss``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import MaskedSmoothing, UniformSmoothing, soft_targets
from adaptls.smoothing.driver import StrategyDriver

PAD = -100
TOL = {"atol": 1e-12, "rtol": 1e-10}


def fairseq_label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index):
    """fairseq's label_smoothed_nll_loss, reduce=True (its code, ported as written)."""
    target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target.clamp(min=0))
    smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
    pad_mask = target.eq(ignore_index)
    nll_loss.masked_fill_(pad_mask, 0.0)
    smooth_loss.masked_fill_(pad_mask, 0.0)
    nll_loss, smooth_loss = nll_loss.sum(), smooth_loss.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    return (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss


def mls_label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index, mask_labels):
    """MLS's label_smoothed_nll_loss with mask_labels, reduce=True (ported as written)."""
    target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target.clamp(min=0))
    temp_probs = lprobs.t()[mask_labels].t()
    smooth_loss = -temp_probs.sum(dim=-1, keepdim=True)
    pad_mask = target.eq(ignore_index)
    nll_loss.masked_fill_(pad_mask, 0.0)
    smooth_loss.masked_fill_(pad_mask, 0.0)
    nll_loss, smooth_loss = nll_loss.sum(), smooth_loss.sum()
    eps_i = epsilon / (len(mask_labels) - 1)
    return (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss


def batch(k=12, n=40, targets_from=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(k, 5, generator=g, dtype=torch.float64)
    pool = torch.arange(k) if targets_from is None else torch.tensor(targets_from)
    targets = pool[torch.randint(0, len(pool), (n,), generator=g)]
    targets[:5] = PAD
    return hidden, weight, targets


def set_up(strategy, k, counts=None):
    driver = StrategyDriver(strategy)
    driver.setup(num_classes=k, class_counts=counts)
    driver.set_epoch(0, max_epochs=1)
    return driver


@pytest.mark.parametrize("epsilon", [0.1, 0.3])
def test_uniform_fairseq_convention_is_fairseqs_loss(epsilon):
    k = 12
    hidden, weight, targets = batch(k)
    logits = hidden @ weight.T
    strategy = UniformSmoothing(epsilon=epsilon, convention="fairseq")
    driver = set_up(strategy, k)
    counted = int((targets != PAD).sum())
    expected = fairseq_label_smoothed_nll_loss(logits.log_softmax(-1), targets, epsilon, PAD)
    torch.testing.assert_close(strategy(logits, targets) * counted, expected, **TOL)
    fused = driver.linear_loss(hidden, weight, targets)
    torch.testing.assert_close(fused * counted, expected, **TOL)


def test_the_two_conventions_place_the_mass_as_documented():
    k, e = 5, 0.2
    logits, targets = torch.zeros(2, k, dtype=torch.float64), torch.tensor([1, 3])
    torch_t = soft_targets(set_up(UniformSmoothing(e), k).strategy, logits, targets)
    fairseq = UniformSmoothing(e, convention="fairseq")
    fairseq_t = soft_targets(set_up(fairseq, k).strategy, logits, targets)
    # torch: 1 - e + e/K on the true class, e/K on the others
    assert torch_t[0, 1] == pytest.approx(1 - e + e / k)
    assert torch_t[0, 0] == pytest.approx(e / k)
    # fairseq: 1 - e on the true class, e/(K-1) on the others
    assert fairseq_t[0, 1] == pytest.approx(1 - e)
    assert fairseq_t[0, 0] == pytest.approx(e / (k - 1))
    for t in (torch_t, fairseq_t):
        torch.testing.assert_close(t.sum(-1), torch.ones(2), check_dtype=False)
    torch.testing.assert_close(torch_t, F.one_hot(targets, k) * (1 - e) + e / k, check_dtype=False)


def test_fairseq_convention_refuses_an_epsilon_past_its_range():
    with pytest.raises(ValueError, match=r"more than \(K-1\)/K = 0.5 for K=2"):
        set_up(UniformSmoothing(0.6, convention="fairseq"), 2)
    with pytest.raises(ValueError, match="convention must be one of 'torch', 'fairseq'"):
        UniformSmoothing(0.1, convention="timm")


@pytest.mark.parametrize("epsilon", [0.1, 0.3])
def test_masked_smoothing_is_mls_loss(epsilon):
    k = 16
    target_side = [1, 2, 3, 5, 8, 13, 14]  # the classes the training targets hold
    counts = [0] * k
    for c in target_side:
        counts[c] = 10 + c
    hidden, weight, targets = batch(k, targets_from=target_side)
    logits = hidden @ weight.T
    strategy = MaskedSmoothing(epsilon=epsilon)
    driver = set_up(strategy, k, counts)
    counted = int((targets != PAD).sum())
    expected = mls_label_smoothed_nll_loss(
        logits.log_softmax(-1), targets, epsilon, PAD, target_side
    )
    torch.testing.assert_close(strategy(logits, targets) * counted, expected, **TOL)
    fused = driver.linear_loss(hidden, weight, targets)
    torch.testing.assert_close(fused * counted, expected, **TOL)
    t = soft_targets(strategy, logits, targets)
    outside = [c for c in range(k) if c not in target_side]
    assert t[targets != PAD][:, outside].abs().max() == 0  # no mass off the target side
    assert strategy.summary()["smoothing/masked_classes"] == len(target_side)


def test_masked_smoothing_with_every_class_seen_is_the_fairseq_convention():
    k = 7
    hidden, weight, targets = batch(k)
    logits = hidden @ weight.T
    masked = MaskedSmoothing(0.2)
    set_up(masked, k, [3] * k)
    uniform = UniformSmoothing(0.2, convention="fairseq")
    set_up(uniform, k)
    torch.testing.assert_close(masked(logits, targets), uniform(logits, targets), **TOL)


def test_masked_smoothing_needs_the_counts():
    with pytest.raises(ValueError, match="MaskedSmoothing needs class_counts"):
        set_up(MaskedSmoothing(0.1), 5)
    with pytest.raises(ValueError, match="at least 2 classes with training targets, got 1"):
        set_up(MaskedSmoothing(0.1), 5, [0, 4, 0, 0, 0])
