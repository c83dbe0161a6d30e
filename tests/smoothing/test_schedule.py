"""Epsilon schedules: exact factors, and composition with every strategy."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import STRATEGIES, EpsilonSchedule, SmoothingStrategy, soft_targets
from adaptls.smoothing.driver import StrategyDriver


@pytest.mark.parametrize(
    ("spec", "epoch", "expected"),
    [
        ("constant", 7, 1.0),
        ("warmup", 0, 0.0),
        ("warmup", 1, 0.5),  # default width: 20 epochs / 10 = 2
        ("warmup", 2, 1.0),
        ({"name": "warmup", "epochs": 4}, 3, 0.75),
        ("cosine", 0, 1.0),
        ("cosine", 10, 0.5),
        ("cosine", 20, 0.0),
        ("cosine", 5, 0.5 * (1 + math.cos(math.pi / 4))),
        ("step", 9, 1.0),  # default milestones 10 and 15
        ("step", 10, 0.1),
        ("step", 15, pytest.approx(0.01)),
        ({"name": "step", "milestones": [3], "gamma": 0.5}, 3, 0.5),
    ],
)
def test_schedule_factor_at_given_epochs(spec, epoch, expected) -> None:
    assert EpsilonSchedule.parse(spec).factor(epoch, max_epochs=20) == expected


@pytest.mark.parametrize(
    "spec",
    ["linear", {"name": "step", "gamma": 2.0}, {"name": "warmup", "epochs": 0}, {"nme": "x"}],
)
def test_bad_schedules_are_rejected_with_the_allowed_values(spec) -> None:
    with pytest.raises(ValueError, match="schedule"):
        EpsilonSchedule.parse(spec)


def _built(name: str, schedule):
    strategy = STRATEGIES[name](schedule=schedule)
    StrategyDriver(strategy).setup(num_classes=5, class_counts=[40, 30, 20, 10, 5])
    return strategy


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_composes_with_a_schedule(name: str) -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    indices = torch.arange(8)
    plain, scheduled = (
        _built(name, None),
        _built(name, {"name": "step", "milestones": [1], "gamma": 0.5}),
    )
    for s in (plain, scheduled):
        s.train()
        driver = StrategyDriver(s)
        driver.observe(logits, targets, indices)
        driver.on_epoch_end()
        driver.set_epoch(2, max_epochs=4)
    assert scheduled.summary()["schedule"] == {"name": "step", "milestones": [1], "gamma": 0.5}
    if not isinstance(plain, SmoothingStrategy):  # a criterion: its schedule scales its
        return  # strength (gamma, alpha, beta), checked in tests/smoothing/peers
    t_plain = soft_targets(plain, logits, targets, indices)
    t_sched = soft_targets(scheduled, logits, targets, indices)
    onehot = torch.nn.functional.one_hot(targets, 5).float()
    # Halving epsilon halves the distance to the one-hot target, whatever the strategy.
    torch.testing.assert_close(t_sched - onehot, 0.5 * (t_plain - onehot))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_the_logged_epsilon_is_the_applied_one(name: str) -> None:
    """smoothing/epsilon* figures include the schedule's factor (here 0.5)."""
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 5) * 3, torch.randint(0, 5, (8,))
    indices = torch.arange(8)
    logged = []
    for schedule in (None, {"name": "step", "milestones": [1], "gamma": 0.5}):
        s = _built(name, schedule)
        s.train()
        driver = StrategyDriver(s)
        driver.set_epoch(0, max_epochs=4)
        s(logits, targets, indices=indices)
        driver.observe(logits, targets, indices)
        driver.on_epoch_end()
        driver.set_epoch(2, max_epochs=4)
        s(logits, targets, indices=indices)
        logged.append({k: float(v) for k, v in s.log_values().items() if "epsilon" in k})
    plain, scheduled = logged
    if not plain:
        pytest.skip(f"{name} logs no epsilon")
    assert plain.keys() == scheduled.keys()
    for key, value in plain.items():
        assert scheduled[key] == pytest.approx(0.5 * value, abs=1e-7), key
