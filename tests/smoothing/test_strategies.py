"""What every strategy shares: the interface, soft targets, the loss, state, errors."""

from __future__ import annotations

import io
import json

import pytest
import torch

from adaptls.smoothing import (
    STRATEGIES,
    ClassFrequencySmoothing,
    ConfidenceSmoothing,
    Criterion,
    OnlineSmoothing,
    SmoothingStrategy,
    Strategy,
    UniformSmoothing,
    soft_targets,
)
from adaptls.smoothing.driver import StrategyDriver

K = 6
COUNTS = [500, 200, 90, 40, 12, 3]
N_SAMPLES = sum(COUNTS)
# Every registered strategy (built-in or not): the contract holds for each.
NAMES = sorted(STRATEGIES)
# Non-default hyperparameters where a test should see them; defaults for the rest.
HPARAMS = {
    "uniform": {"epsilon": 0.2},
    "confidence": {"epsilon_max": 0.3, "signal": "entropy"},
    "class_frequency": {"epsilon_head": 0.4, "shape": "linear"},
    "online": {"alpha": 0.6},
    "feedback": {"epsilon_init": 0.15, "per_class": True},
    "self_distill": {"alpha_T": 0.5},
    "focal": {"gamma": 2.0},
    "mbls": {"margin": 3.0, "alpha": 0.5},
}


def make(name: str) -> Strategy:
    strategy = STRATEGIES[name](**HPARAMS.get(name, {}))
    driver = StrategyDriver(strategy)
    driver.setup(num_classes=K, class_counts=COUNTS)
    driver.set_epoch(0, 3)
    return strategy


def batch(seed=0, shape=(4, 5)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, K, generator=g) * 2
    targets = torch.randint(0, K, shape, generator=g)
    targets[0, :2] = -100
    return logits, targets


def indices_for(targets: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Distinct sample indices, one per target (self-distillation keys its table on them)."""
    g = torch.Generator().manual_seed(100 + seed)
    return torch.randperm(N_SAMPLES, generator=g)[: targets.numel()].view(targets.shape)


def trained(name: str) -> Strategy:
    """A strategy after a short training epoch and the start of the next: statistics
    collected, reduced and used (online's S, self-distillation's table, ...)."""
    strategy = make(name)
    for seed in range(3):
        logits, targets = batch(seed)
        indices = indices_for(targets, seed)
        strategy(logits * 3, targets, indices=indices)
        StrategyDriver(strategy).observe(logits * 3, targets, indices)
        if seed == 1:
            StrategyDriver(strategy).on_epoch_end()
            StrategyDriver(strategy).set_epoch(1, 3)
    return strategy


def has_soft_targets(strategy: Strategy) -> bool:
    """Soft-target strategies have one; criteria (no soft-target CE) have none."""
    assert isinstance(strategy, (SmoothingStrategy, Criterion))
    return isinstance(strategy, SmoothingStrategy)


def test_every_strategy_is_registered_under_its_name():
    for name, cls in STRATEGIES.items():
        assert cls.name == name and issubclass(cls, (SmoothingStrategy, Criterion))
    assert {
        "none", "uniform", "confidence", "class_frequency", "online", "feedback",
        "self_distill", "focal", "flsd", "mbls", "acls", "dual_focal", "mdca", "cals",
        "adafocal",
    } <= set(STRATEGIES)  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_soft_targets_are_distributions(name):
    strategy = trained(name)
    if not has_soft_targets(strategy):
        return
    logits, targets = batch()
    t = soft_targets(strategy, logits, targets, indices_for(targets))
    assert t.shape == logits.shape
    counted = targets != -100
    assert (t >= 0).all()
    torch.testing.assert_close(t[counted].sum(-1), torch.ones(int(counted.sum())))
    assert (t[~counted] == 0).all()
    assert (t[counted].argmax(-1) == targets[counted]).all()  # smoothing keeps the label


SOFT_TARGET_CE = [
    n
    for n in NAMES
    if issubclass(STRATEGIES[n], SmoothingStrategy)
    and STRATEGIES[n]._flat_loss is SmoothingStrategy._flat_loss
]


@pytest.mark.parametrize("name", SOFT_TARGET_CE)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_is_cross_entropy_against_the_soft_targets(name, reduction):
    """For every strategy that keeps the default loss (the fused soft-target CE)."""
    strategy = trained(name)
    logits, targets = batch(seed=4)
    indices = indices_for(targets, seed=4)
    t = soft_targets(strategy, logits, targets, indices)
    x = logits.clone().requires_grad_()
    loss = strategy(x, targets, reduction=reduction, indices=indices)
    rows = -(t * torch.log_softmax(logits, -1)).sum(-1)
    expected = {
        "none": rows,
        "sum": rows.sum(),
        "mean": rows.sum() / (targets != -100).sum(),
    }[reduction]
    # Both sides sum K products per row and up to 20 rows in float32, in orders that differ
    # with the CPU's vector width: within (K + rows + a few logsumexp roundings) u of each
    # other, u = 2^-24 (Higham's bound).
    tol = (K + 20 + 6) * 2.0**-24
    torch.testing.assert_close(loss.detach(), expected, rtol=tol, atol=tol)
    loss.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", SOFT_TARGET_CE)
def test_float64_soft_targets_are_what_the_float64_loss_trains_against(name):
    """float64 logits: the soft target is float64 too (it was float32, about 1e-8 off)."""
    strategy = trained(name)
    logits, targets = batch(seed=5)
    logits = logits.double()
    indices = indices_for(targets, seed=5)
    t = soft_targets(strategy, logits, targets, indices)
    assert t.dtype == torch.float64
    loss = strategy(logits, targets, reduction="none", indices=indices)
    rows = -(t * torch.log_softmax(logits, -1)).sum(-1)
    # The fused loss takes sum(t_i) = 1 (it subtracts the row max once); a prior kept in
    # float32 (self-distillation's table) sums to 1 only to float32 rounding, which moves
    # the two sides apart by |1 - sum t_i| |logsumexp x_i|. Beyond that: K products and a
    # few roundings per row in float64, of values below 10.
    lse = torch.logsumexp(logits, -1)
    bound = (1 - t.sum(-1)).abs() * lse.abs() + (K + 6) * 2.0**-53 * 10
    assert torch.all((loss - rows).abs() <= bound)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    strategy = trained(name)
    state = strategy.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = make(name)
    fresh.load_state_dict(torch.load(buffer))
    StrategyDriver(fresh).set_epoch(
        strategy.epoch, strategy.max_epochs
    )  # the loop's, not the checkpoint's
    logits, targets = batch(seed=5)
    indices = indices_for(targets, seed=5)
    for s in (fresh, strategy):
        s.eval()  # an evaluation pass: no applied-epsilon bookkeeping
    torch.testing.assert_close(
        fresh(logits, targets, indices=indices),
        strategy(logits, targets, indices=indices),
        rtol=0,
        atol=0,
    )
    if has_soft_targets(strategy):
        torch.testing.assert_close(
            soft_targets(fresh, logits, targets, indices),
            soft_targets(strategy, logits, targets, indices),
        )
    for s in (fresh, strategy):  # per-batch figures (focal's mean gamma, ...) come from
        s.train()(logits, targets, indices=indices)  # the last training batch, not the state
    assert fresh.summary() == strategy.summary()


@pytest.mark.parametrize("name", NAMES)
def test_hparams_rebuild_the_strategy_and_show_in_its_repr(name):
    strategy = make(name)
    hparams = HPARAMS.get(name, {})
    assert type(strategy)(**strategy.hparams()).hparams() == strategy.hparams()
    assert {k: strategy.hparams()[k] for k in hparams} == hparams
    for key, value in strategy.hparams().items():
        if isinstance(value, int | float | str | bool):
            assert f"{key}={value!r}" in repr(strategy)


@pytest.mark.parametrize("name", NAMES)
def test_summary_is_json(name):
    strategy = trained(name)
    summary = json.loads(json.dumps(strategy.summary()))
    assert summary["name"] == name and summary["hparams"] == strategy.hparams()
    for key, value in strategy.log_values().items():
        assert key.startswith("smoothing/")
        # floats, or 0-d tensors that Lightning logs without a host sync
        assert isinstance(value, float) or (torch.is_tensor(value) and value.dim() == 0)
        assert isinstance(summary[key], float | None)


@pytest.mark.parametrize("name", NAMES)
def test_use_before_setup_names_the_missing_fact(name):
    strategy = STRATEGIES[name](**HPARAMS.get(name, {}))
    with pytest.raises(RuntimeError, match=r"needs num_classes: call setup\(num_classes=\.\.\.\)"):
        strategy(*batch())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("logits", "targets", "error", "message"),
    [
        (torch.zeros(3, K), torch.tensor([0, K, 1]), ValueError, r"target 6 .*allowed are 0\.\.5"),
        (torch.zeros(3, K), torch.tensor([0, 1]), ValueError, r"\(3, 6\) and targets \(2,\)"),
        (torch.zeros(3, K, dtype=torch.int64), torch.tensor([0, 1, 2]), TypeError, "int64"),
        (torch.zeros(3, K), torch.zeros(3), TypeError, "integer tensor.*float32"),
        (torch.zeros(3, K + 1), torch.tensor([0, 1, 2]), ValueError, "7 classes.*num_classes=6"),
    ],
)
def test_bad_inputs_are_named(name, logits, targets, error, message):
    strategy = make(name)
    with pytest.raises(error, match=message):
        strategy(logits, targets)


@pytest.mark.parametrize("name", NAMES)
def test_bad_reduction_is_named(name):
    with pytest.raises(ValueError, match=r"'mean', 'sum', 'none'.*'batchmean'"):
        make(name)(*batch(), reduction="batchmean")


@pytest.mark.parametrize(
    ("num_classes", "counts", "message"),
    [
        (1, None, r"num_classes must be an int >= 2, got 1"),
        (2.5, None, r"num_classes must be an int >= 2, got 2\.5"),
        (True, None, r"got True"),
        (3, [1, 2], r"one entry per class \(3\), got shape \(2,\)"),
        (3, [4, -1, 2], r"whole numbers >= 0, got -1 for class 1"),
        (3, [4.0, 1.5, 2.0], r"whole numbers >= 0, got 1\.5 for class 1"),
    ],
)
def test_setup_checks_the_data_facts(num_classes, counts, message):
    strategy = UniformSmoothing()
    with pytest.raises(ValueError, match=message):
        strategy.setup(num_classes, counts)
    assert strategy.num_classes is None  # a failed setup leaves nothing half set


@pytest.mark.parametrize(
    ("cls", "hparams", "error", "message"),
    [
        (
            UniformSmoothing,
            {"epsilon": 1.0},
            ValueError,
            r"epsilon must be a number in \[0, 1\), got 1\.0",
        ),
        (UniformSmoothing, {"epsilon": -0.1}, ValueError, r"\[0, 1\), got -0\.1"),
        (UniformSmoothing, {"epsilon": "0.1"}, TypeError, r"epsilon must be a number .*'0\.1'"),
        (UniformSmoothing, {"epsilon": True}, TypeError, r"got True"),
        (ConfidenceSmoothing, {"epsilon_min": 1.2}, ValueError, r"epsilon_min .*got 1\.2"),
        (ConfidenceSmoothing, {"epsilon_max": 1.0}, ValueError, r"epsilon_max .*got 1\.0"),
        (
            ConfidenceSmoothing,
            {"epsilon_min": 0.3, "epsilon_max": 0.2},
            ValueError,
            r"epsilon_min \(0\.3\) must be <= epsilon_max \(0\.2\)",
        ),
        (
            ConfidenceSmoothing,
            {"signal": "margin"},
            ValueError,
            r"signal must be one of 'max_prob', 'target_prob', 'entropy'; got 'margin'",
        ),
        (ConfidenceSmoothing, {"power": 0}, ValueError, r"power must be a number > 0, got 0"),
        (ClassFrequencySmoothing, {"epsilon_head": 1.5}, ValueError, r"epsilon_head .*1\.5"),
        (ClassFrequencySmoothing, {"epsilon_tail": -0.2}, ValueError, r"epsilon_tail .*-0\.2"),
        (
            ClassFrequencySmoothing,
            {"shape": "cubic"},
            ValueError,
            r"shape must be one of 'concave', 'linear', 'convex', 'power'; got 'cubic'",
        ),
        (ClassFrequencySmoothing, {"power": -1.0}, ValueError, r"power .*> 0, got -1\.0"),
        (
            OnlineSmoothing,
            {"alpha": 1.5},
            ValueError,
            r"alpha must be a number in \[0, 1\], got 1\.5",
        ),
        (OnlineSmoothing, {"alpha": -0.1}, ValueError, r"\[0, 1\], got -0\.1"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(cls, hparams, error, message):
    with pytest.raises(error, match=message):
        cls(**hparams)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_online_alpha_bounds_are_allowed(alpha):
    assert OnlineSmoothing(alpha=alpha).alpha == alpha


def test_ignore_index_is_a_constructor_option():
    strategy = UniformSmoothing(0.1, ignore_index=0)
    strategy.setup(num_classes=3)
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    t = soft_targets(strategy, logits, targets)
    assert (t[[0, 3]] == 0).all() and (t[[1, 2]].sum(-1) == 1).all()
    with pytest.raises(ValueError, match="ignore_index=0"):
        strategy(logits, torch.tensor([0, 1, 2, -100]))
