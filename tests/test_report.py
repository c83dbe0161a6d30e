"""The run's closing words: the direction and size of the test set's miscalibration."""

from __future__ import annotations

import pytest

from adaptls.report import calibration_verdict


@pytest.mark.parametrize(
    ("confidence", "accuracy", "expected"),
    [
        (0.83, 0.947, "under-confident by 11.7 points"),
        (0.984, 0.931, "over-confident by 5.3 points"),
        (0.902, 0.9, "about as confident as it is accurate"),
    ],
)
def test_the_verdict_names_direction_and_size(confidence, accuracy, expected):
    test = {"test/confidence": confidence, "test/acc": accuracy, "test/ece": 0.116}
    verdict = calibration_verdict(test)
    assert expected in verdict
    assert f"mean confidence {confidence:.3f}, accuracy {accuracy:.3f}, ECE 11.6%" in verdict


def test_no_verdict_without_the_figures():
    assert calibration_verdict({"test/acc": 0.9}) is None
    assert calibration_verdict({"test/acc": 0.9, "test/confidence": float("nan")}) is None
