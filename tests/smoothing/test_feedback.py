"""The feedback controller: direction, bounds, per-class moves, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from adaptls.smoothing import ClassFigures, FeedbackSmoothing, ValidationPass, soft_targets


def _ready(**kwargs) -> FeedbackSmoothing:
    s = FeedbackSmoothing(**kwargs)
    s.setup(num_classes=4)
    return s


def test_over_confidence_raises_epsilon_and_under_confidence_lowers_it() -> None:
    s = _ready(epsilon_init=0.1, gain=1.0)
    s.on_validation_end(ValidationPass(confidence=0.9, acc=0.8))
    assert s.epsilon.item() == pytest.approx(0.2)
    s.on_validation_end(ValidationPass(confidence=0.75, acc=0.8))
    assert s.epsilon.item() == pytest.approx(0.15)
    assert s.log_values() == {
        "smoothing/epsilon": pytest.approx(0.15),
        "smoothing/gap": pytest.approx(-0.05),
    }


def test_bounds_hold() -> None:
    s = _ready(epsilon_init=0.1, gain=10.0, epsilon_min=0.05, epsilon_max=0.3)
    s.on_validation_end(ValidationPass(confidence=1.0, acc=0.0))
    assert s.epsilon.item() == pytest.approx(0.3)
    s.on_validation_end(ValidationPass(confidence=0.0, acc=1.0))
    assert s.epsilon.item() == pytest.approx(0.05)


def test_the_loss_uses_the_current_epsilon() -> None:
    s = _ready(epsilon_init=0.2)
    logits, targets = torch.randn(6, 4), torch.randint(0, 4, (6,))
    expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.2)
    torch.testing.assert_close(s(logits, targets), expected)


def test_per_class_moves_only_classes_with_a_gap() -> None:
    s = _ready(epsilon_init=0.1, gain=1.0, per_class=True)
    s.on_validation_end(
        ValidationPass(
            confidence=0.5,
            acc=0.5,
            classes=ClassFigures(
                confidence=torch.tensor([0.9, 0.5, 0.3, math.nan]),
                acc=torch.tensor([0.7, 0.5, 0.4, math.nan]),
                count=torch.tensor([3, 2, 5, 0]),
            ),
        )
    )
    torch.testing.assert_close(s.epsilon, torch.tensor([0.3, 0.1, 0.0, 0.1]))
    t = soft_targets(s, torch.zeros(2, 4), torch.tensor([0, 1]))
    assert t[0, 0].item() == pytest.approx(1 - 0.3 + 0.3 / 4)
    assert t[1, 1].item() == pytest.approx(1 - 0.1 + 0.1 / 4)


def test_state_survives_a_state_dict_round_trip() -> None:
    s = _ready(per_class=True)
    s.on_validation_end(
        ValidationPass(
            confidence=0.75,
            acc=0.0,
            classes=ClassFigures(
                confidence=torch.tensor([0.9, 0.8, 0.7, 0.6]),
                acc=torch.zeros(4),
                count=torch.ones(4),
            ),
        )
    )
    fresh = _ready(per_class=True)
    fresh.load_state_dict(s.state_dict())
    torch.testing.assert_close(fresh.epsilon, s.epsilon)


def test_missing_metrics_and_bad_hyperparameters_are_named() -> None:
    with pytest.raises(ValueError, match=r"per_class=True\) needs the per-class figures"):
        _ready(per_class=True).on_validation_end(ValidationPass(confidence=0.5, acc=0.5))
    with pytest.raises(KeyError, match=r"needs \['confidence'\]; got \['acc'\]"):
        ValidationPass.from_suite({"acc": 0.5})
    with pytest.raises(ValueError, match="gain"):
        FeedbackSmoothing(gain=-1)
    with pytest.raises(ValueError, match="epsilon_init"):
        FeedbackSmoothing(epsilon_init=0.6, epsilon_max=0.5)
