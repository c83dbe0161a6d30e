"""smoothing_amount(): the epsilon applied to training rows, counted without a kernel launch
per call for a float epsilon (the batches' rows are counted later, many at once)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from adaptls.smoothing import ConfidenceSmoothing, UniformSmoothing, _applied
from adaptls.smoothing.driver import StrategyDriver

K = 4


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def targets_with_ignored(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.3] = -100
    return y


def test_a_float_epsilon_is_recorded_without_any_tensor_operation():
    s = UniformSmoothing(0.2)
    s.setup(num_classes=K)
    y = targets_with_ignored(16, 0)
    with _CountOps() as mode:
        s._record_applied(0.2, y)
    assert mode.ops == []


@pytest.mark.parametrize("batches", [1, 255, 256, 257, 600])  # across the counting threshold
def test_every_training_row_is_counted_once_with_its_epsilon(batches):
    s = UniformSmoothing(0.2, schedule={"name": "warmup", "epochs": 2})
    s.setup(num_classes=K)
    expected_eps = expected_rows = 0.0
    for epoch in range(2):
        StrategyDriver(s).set_epoch(epoch, 4)
        for b in range(batches):
            y = targets_with_ignored(1 + b % 7, 100 * epoch + b)
            s(torch.randn(len(y), K), y)
            rows = float((y != -100).sum())
            expected_rows += rows
            expected_eps += rows * 0.2 * s.schedule_factor
        StrategyDriver(s).on_epoch_end()
    if expected_rows:
        assert StrategyDriver(s).smoothing_amount() == pytest.approx(
            expected_eps / expected_rows, rel=1e-12
        )
    assert float(s.applied_rows_total) == expected_rows


def test_a_checkpoint_mid_epoch_holds_the_rows_not_yet_counted():
    s = UniformSmoothing(0.1)
    s.setup(num_classes=K)
    y = torch.tensor([0, 1, -100, 3])
    for _ in range(3):
        s(torch.randn(4, K), y)
    state = s.get_extra_state()
    assert float(state["applied_rows_epoch"]) == 9.0
    assert float(state["applied_epsilon_epoch"]) == pytest.approx(0.9)
    restored = UniformSmoothing(0.1)
    restored.setup(num_classes=K)
    restored.load_state_dict(s.state_dict())
    StrategyDriver(restored).on_epoch_end()
    assert StrategyDriver(restored).smoothing_amount() == pytest.approx(0.1)


def test_rows_of_an_epoch_that_is_reset_are_dropped():
    s = UniformSmoothing(0.1)
    s.setup(num_classes=K)
    s(torch.randn(2, K), torch.tensor([0, 1]))
    s._reset_states(per_epoch=True)
    StrategyDriver(s).on_epoch_end()
    assert StrategyDriver(s).smoothing_amount() is None


def test_targets_changed_in_place_before_they_are_counted_fail_clearly():
    s = UniformSmoothing(0.1)
    s.setup(num_classes=K)
    y = torch.tensor([0, 1, 2])
    s(torch.randn(3, K), y)
    y.fill_(-100)  # a reused target buffer: the kept batch no longer holds its rows
    with pytest.raises(RuntimeError, match="modified in place"):
        StrategyDriver(s).on_epoch_end()


def test_per_row_epsilon_is_counted_at_once(monkeypatch):
    # tensors are read at the call (a strategy may update its own tensors in place later)
    monkeypatch.setattr(_applied, "_UNCOUNTED_BATCHES", 10**9)
    s = ConfidenceSmoothing()
    s.setup(num_classes=K)
    s(torch.randn(5, K), torch.tensor([0, 1, 2, -100, 3]))
    assert not s._uncounted.batches
    assert float(s.applied_rows_epoch) == 4.0
