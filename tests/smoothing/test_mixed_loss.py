"""Mixed batches (mixup, cutmix) for every registered strategy: the target of a mixed row
is lam t(y_a) + (1 - lam) t(y_b) with t the strategy's own soft target, exactly, through
the fused loss; lam = 1 is the unmixed loss; the applied-epsilon record counts rows once;
stateful strategies observe the dominant constituent."""

from __future__ import annotations

import pytest
import torch

from adaptls.smoothing import STRATEGIES, SmoothingStrategy, soft_targets
from adaptls.smoothing.driver import StrategyDriver
from adaptls.smoothing.validation_pass import ValidationPass

K = 6
COUNTS = [50, 30, 20, 12, 8, 5]  # 125 training samples
N = 16
# Strategies whose loss is a soft-target cross-entropy (the calibration losses are not).
SOFT_TARGET_CE = sorted(n for n, cls in STRATEGIES.items() if issubclass(cls, SmoothingStrategy))


def batch(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, K, generator=g, dtype=torch.float64) * 2
    y_a = torch.randint(0, K, (N,), generator=g)
    perm = torch.randperm(N, generator=g)
    idx = torch.randperm(sum(COUNTS), generator=g)[:N]
    return logits, y_a, y_a[perm], idx, idx[perm]


def trained(name: str) -> SmoothingStrategy:
    """The strategy at its defaults, set up, one epoch of statistics collected (so state
    such as online's S and self-distillation's stored predictions is in use), training."""
    strategy = STRATEGIES[name]()
    strategy.setup(num_classes=K, class_counts=COUNTS)
    StrategyDriver(strategy).set_epoch(0, 4)
    strategy.train()
    g = torch.Generator().manual_seed(99)
    for start in range(0, sum(COUNTS), 25):
        idx = torch.arange(start, start + 25)
        y = torch.randint(0, K, (25,), generator=g)
        logits = torch.randn(25, K, generator=g) * 3
        logits[torch.arange(25), y] += 4  # mostly correct: online collects rows
        strategy.observe(logits, y, idx)
    StrategyDriver(strategy).on_epoch_end()
    StrategyDriver(strategy).set_epoch(1, 4)
    strategy.on_validation_end(ValidationPass(acc=0.7, confidence=0.75, ece=0.05))
    return strategy


@pytest.mark.parametrize("name", SOFT_TARGET_CE)
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.91])
def test_mixed_loss_is_cross_entropy_against_the_mixed_dense_target(name, lam):
    strategy = trained(name)
    logits, y_a, y_b, idx_a, idx_b = batch(seed=1)
    t = lam * soft_targets(strategy, logits, y_a, idx_a) + (1 - lam) * soft_targets(
        strategy, logits, y_b, idx_b
    )
    t = t.double()
    # Strategies keep epsilon and priors in float32 (class epsilons, S, stored predictions):
    # each target entry is exact to a few float32 roundings, u = 2^-24.
    u = 2.0**-24
    assert t.sum(-1).sub(1).abs().max() < 4 * K * u  # the mixed target is a distribution
    x = logits.clone().requires_grad_()
    loss = StrategyDriver(strategy).mixed_loss(x, y_a, y_b, lam, indices_a=idx_a, indices_b=idx_b)
    loss.backward()
    log_p = torch.log_softmax(logits, -1)
    expected = -(t * log_p).sum(-1).mean()
    tol = 4 * K * u * float(log_p.abs().max())
    torch.testing.assert_close(loss.detach(), expected, rtol=0, atol=tol)
    # d loss / d x = (softmax(x) - t) / N: the gradient sees the mixed target too
    grad = (torch.softmax(logits, -1) - t) / N
    torch.testing.assert_close(x.grad, grad, rtol=0, atol=4 * K * u / N)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_lam_one_is_the_unmixed_loss(name):
    strategy = trained(name)
    logits, y_a, y_b, idx_a, idx_b = batch(seed=2)
    for reduction in ("mean", "sum", "none"):
        mixed = StrategyDriver(strategy).mixed_loss(
            logits, y_a, y_b, 1.0, reduction, indices_a=idx_a, indices_b=idx_b
        )
        plain = strategy(logits, y_a, reduction, indices=idx_a)
        assert torch.equal(mixed, plain)
    # lam -> 1 approaches the unmixed loss continuously
    near = StrategyDriver(strategy).mixed_loss(
        logits, y_a, y_b, 1 - 1e-9, indices_a=idx_a, indices_b=idx_b
    )
    torch.testing.assert_close(near, strategy(logits, y_a, indices=idx_a), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("lam", [0.2, 0.7])
def test_every_mixed_loss_is_the_lam_weighted_pair_of_losses(name, lam):
    """The definition for every strategy (for the calibration losses it *is* the
    definition of mixing: the mixup paper's mixup_criterion)."""
    strategy = trained(name)
    logits, y_a, y_b, idx_a, idx_b = batch(seed=3)
    mixed = StrategyDriver(strategy).mixed_loss(
        logits, y_a, y_b, lam, indices_a=idx_a, indices_b=idx_b
    )
    a = strategy(logits, y_a, indices=idx_a)
    b = strategy(logits, y_b, indices=idx_b)
    torch.testing.assert_close(mixed, lam * a + (1 - lam) * b, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(mixed)


@pytest.mark.parametrize("lam", [0.25, 0.6])
def test_applied_epsilon_counts_each_mixed_row_once(lam):
    strategy = STRATEGIES["class_frequency"](epsilon_head=0.4, epsilon_tail=0.0)
    strategy.setup(num_classes=K, class_counts=COUNTS)
    strategy.train()
    logits, y_a, y_b, _, _ = batch(seed=4)
    with torch.enable_grad():
        StrategyDriver(strategy).mixed_loss(logits.requires_grad_(), y_a, y_b, lam)
    StrategyDriver(strategy).on_epoch_end()
    assert float(strategy.applied_rows_total) == pytest.approx(N)
    eps = strategy.epsilon_per_class.double()  # float32 values, summed in float64
    expected = (lam * eps[y_a] + (1 - lam) * eps[y_b]).mean().item()
    assert StrategyDriver(strategy).smoothing_amount() == pytest.approx(expected, rel=1e-12)


def test_applied_epsilon_of_a_composed_base_counts_rows_once():
    strategy = STRATEGIES["mdca"](base={"name": "uniform", "epsilon": 0.2})
    driver = StrategyDriver(strategy)
    driver.setup(num_classes=K, class_counts=COUNTS)
    strategy.train()
    logits, y_a, y_b, _, _ = batch(seed=5)
    driver.mixed_loss(logits.requires_grad_(), y_a, y_b, 0.4)
    driver.on_epoch_end()
    assert float(strategy.base.applied_rows_total) == pytest.approx(N)
    assert StrategyDriver(strategy.base).smoothing_amount() == pytest.approx(0.2)


@pytest.mark.parametrize(("lam", "dominant"), [(0.5, "a"), (0.8, "a"), (0.49, "b"), (0.0, "b")])
@pytest.mark.parametrize("name", ["online", "self_distill"])
def test_stateful_strategies_observe_the_dominant_constituent(name, lam, dominant):
    logits, y_a, y_b, idx_a, idx_b = batch(seed=6)
    logits[torch.arange(N), y_a if dominant == "a" else y_b] += 5
    mixed, plain = trained(name), trained(name)
    StrategyDriver(mixed).observe_mixed(logits, y_a, y_b, lam, idx_a, idx_b)
    if dominant == "a":
        plain.observe(logits, y_a, idx_a)
    else:
        plain.observe(logits, y_b, idx_b)
    for key, value in plain.get_extra_state().items():
        assert torch.equal(mixed.get_extra_state()[key], value), key


@pytest.mark.parametrize("lam", [-0.1, 1.5, True, float("nan")])
def test_bad_lam_is_named(lam):
    strategy = trained("uniform")
    logits, y_a, y_b, _, _ = batch(seed=7)
    with pytest.raises((ValueError, TypeError), match=r"lam must be a number in \[0, 1\]"):
        StrategyDriver(strategy).mixed_loss(logits, y_a, y_b, lam)
