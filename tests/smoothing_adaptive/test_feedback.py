"""The feedback controller: direction, bounds, per-class moves, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import FeedbackSmoothing


def _ready(**kwargs) -> FeedbackSmoothing:
    s = FeedbackSmoothing(**kwargs)
    s.setup(num_classes=4)
    return s


def test_over_confidence_raises_epsilon_and_under_confidence_lowers_it() -> None:
    s = _ready(epsilon_init=0.1, gain=1.0)
    s.on_validation_end({"val/confidence": 0.9, "val/acc": 0.8})
    assert s.epsilon.item() == pytest.approx(0.2)
    s.on_validation_end({"val/confidence": 0.75, "val/acc": 0.8})
    assert s.epsilon.item() == pytest.approx(0.15)
    assert s.log_values() == {
        "smoothing/epsilon": pytest.approx(0.15),
        "smoothing/gap": pytest.approx(-0.05),
    }


def test_bounds_hold() -> None:
    s = _ready(epsilon_init=0.1, gain=10.0, epsilon_min=0.05, epsilon_max=0.3)
    s.on_validation_end({"val/confidence": 1.0, "val/acc": 0.0})
    assert s.epsilon.item() == pytest.approx(0.3)
    s.on_validation_end({"val/confidence": 0.0, "val/acc": 1.0})
    assert s.epsilon.item() == pytest.approx(0.05)


def test_the_loss_uses_the_current_epsilon() -> None:
    s = _ready(epsilon_init=0.2)
    logits, targets = torch.randn(6, 4), torch.randint(0, 4, (6,))
    expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.2)
    torch.testing.assert_close(s(logits, targets), expected)


def test_per_class_moves_only_classes_with_a_gap() -> None:
    s = _ready(epsilon_init=0.1, gain=1.0, per_class=True)
    s.on_validation_end(
        {
            "val/confidence": 0.5,
            "val/acc": 0.5,
            "val/class/confidence": torch.tensor([0.9, 0.5, 0.3, math.nan]),
            "val/class/acc": torch.tensor([0.7, 0.5, 0.4, math.nan]),
        }
    )
    torch.testing.assert_close(s.epsilon, torch.tensor([0.3, 0.1, 0.0, 0.1]))
    t = s.soft_targets(torch.zeros(2, 4), torch.tensor([0, 1]))
    assert t[0, 0].item() == pytest.approx(1 - 0.3 + 0.3 / 4)
    assert t[1, 1].item() == pytest.approx(1 - 0.1 + 0.1 / 4)


def test_state_survives_a_state_dict_round_trip() -> None:
    s = _ready(per_class=True)
    s.on_validation_end(
        {
            "val/class/confidence": torch.tensor([0.9, 0.8, 0.7, 0.6]),
            "val/class/acc": torch.zeros(4),
        }
    )
    fresh = _ready(per_class=True)
    fresh.load_state_dict(s.state_dict())
    torch.testing.assert_close(fresh.epsilon, s.epsilon)


def test_missing_metrics_and_bad_hyperparameters_are_named() -> None:
    with pytest.raises(KeyError, match="val/confidence"):
        _ready().on_validation_end({"val/acc": 0.5})
    with pytest.raises(ValueError, match="gain"):
        FeedbackSmoothing(gain=-1)
    with pytest.raises(ValueError, match="epsilon_init"):
        FeedbackSmoothing(epsilon_init=0.6, epsilon_max=0.5)
