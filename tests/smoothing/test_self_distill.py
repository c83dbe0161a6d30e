"""Progressive self-distillation: one-hot at epoch 0, then the stored predictions of
exactly the batch's samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import SelfDistillSmoothing, soft_targets
from adaptls.smoothing.driver import StrategyDriver


def _ready() -> SelfDistillSmoothing:
    s = SelfDistillSmoothing(alpha_T=0.8)
    s.setup(num_classes=3, class_counts=[4, 3, 3])  # 10 training samples
    s.train()
    return s


def test_epoch_zero_targets_are_one_hot() -> None:
    s = _ready()
    StrategyDriver(s).set_epoch(0, max_epochs=4)
    logits, targets = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(
        soft_targets(s, logits, targets, torch.arange(5)), F.one_hot(targets, 3).float()
    )
    torch.testing.assert_close(
        s(logits, targets, indices=torch.arange(5)), F.cross_entropy(logits, targets)
    )


def test_later_targets_mix_with_the_stored_predictions_of_those_samples() -> None:
    s = _ready()
    StrategyDriver(s).set_epoch(0, max_epochs=4)
    torch.manual_seed(0)
    logits = torch.randn(10, 3)
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    s.observe(logits[:6], targets[:6], torch.arange(6))
    s.observe(logits[6:], targets[6:], torch.arange(6, 10))
    StrategyDriver(s).on_epoch_end()
    StrategyDriver(s).set_epoch(
        2, max_epochs=4
    )  # a = 0.8 * (2 + 1) / 4, the official (epoch + 1) / E
    pick = torch.tensor([7, 2, 5])
    t = soft_targets(s, torch.zeros(3, 3), targets[pick], pick)
    p_prev = torch.softmax(logits[pick], -1)  # stored in float32, as the official code does
    expected = 0.4 * F.one_hot(targets[pick], 3).float() + 0.6 * p_prev
    torch.testing.assert_close(t, expected)


def test_evaluation_batches_are_not_collected_and_need_no_indices() -> None:
    s = _ready()
    s.eval()
    s.observe(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    StrategyDriver(s).on_epoch_end()
    assert s.summary()["stored_predictions"] == 0
    StrategyDriver(s).set_epoch(3, max_epochs=4)
    logits, targets = torch.randn(2, 3), torch.tensor([0, 1])
    torch.testing.assert_close(s(logits, targets), F.cross_entropy(logits, targets))


def test_state_round_trip_and_index_errors() -> None:
    s = _ready()
    s.observe(torch.randn(3, 3), torch.tensor([0, 1, 2]), torch.tensor([0, 4, 9]))
    StrategyDriver(s).on_epoch_end()
    fresh = _ready()
    fresh.load_state_dict(s.state_dict())
    assert fresh.summary()["stored_predictions"] == 3
    with pytest.raises(RuntimeError, match="sample index out of range"):
        s.observe(torch.randn(1, 3), torch.tensor([0]), torch.tensor([10]))
    with pytest.raises(ValueError, match="indices"):
        s.observe(torch.randn(1, 3), torch.tensor([0]), None)
    with pytest.raises(ValueError, match="class_counts"):
        SelfDistillSmoothing().setup(num_classes=3)
