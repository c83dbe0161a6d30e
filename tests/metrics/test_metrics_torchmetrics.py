"""adaptls metrics against torchmetrics where torchmetrics has the same metric."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from adaptls.metrics import (
    Accuracy,
    BalancedAccuracy,
    CalibrationSuite,
    ExpectedCalibrationError,
    MaxCalibrationError,
)


def values(preds, targets, n_bins=15, **kwargs):
    """(adaptls ECE, MCE), (torchmetrics ECE, MCE) on the same input."""
    k = preds.shape[-1]
    ours = []
    for metric in (ExpectedCalibrationError, MaxCalibrationError):
        m = metric(k, n_bins=n_bins, **kwargs)
        m.update(preds, targets)
        ours.append(float(m.compute()))
    theirs = [
        float(MulticlassCalibrationError(k, n_bins=n_bins, norm=norm)(preds, targets))
        for norm in ("l1", "max")
    ]
    return ours, theirs


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(2, 12),
    n_bins=st.sampled_from([15, 15, 10, 7, 1]),
    scale=st.sampled_from([0.3, 2.0, 5.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_ece_and_mce_equal_torchmetrics(n, k, n_bins, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=generator)
    targets = torch.randint(0, k, (n,), generator=generator)
    # torchmetrics treats inputs inside [0, 1] as probabilities, not logits.
    assume(bool(((logits < 0) | (logits > 1)).any()))
    assume(bool((torch.softmax(logits, -1).amax(-1) < 1).all()))
    ours, theirs = values(logits, targets, n_bins)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_confidence_exactly_on_an_edge_goes_to_the_bin_above_like_torchmetrics():
    # Confidences equal to torchmetrics' own float32 edges (not to the decimal k/15).
    edges = torch.linspace(0, 1, 16)[8:15]
    probs = torch.stack((edges, 1 - edges), dim=1)
    for targets in (torch.zeros(7, dtype=torch.long), torch.tensor([0, 1, 0, 1, 0, 1, 0])):
        ours, theirs = values(probs, targets, input_type="probs")
        assert ours == pytest.approx(theirs, abs=1e-7)
    reliability = ExpectedCalibrationError(2, input_type="probs")
    reliability.update(probs, targets)
    assert reliability.reliability()["count"][8:15].tolist() == [1.0] * 7


def test_confidence_one_goes_to_the_top_bin_not_a_hidden_one():
    # A wrong row at confidence exactly 1 and a right row at 0.95 share the top bin here:
    # |acc - conf| = |0.5 - 0.975|. torchmetrics keeps 1.0 in a 16th bin (its issue 3510):
    # ECE = (0.05 + 1) / 2, MCE = 1.
    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05]])
    targets = torch.tensor([1, 0])
    (ece, mce), (tm_ece, tm_mce) = values(probs, targets, input_type="probs")
    assert ece == pytest.approx(0.475) and mce == pytest.approx(0.475)
    assert tm_ece == pytest.approx(0.525) and tm_mce == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(2, 10), seed=st.integers(0, 2**31 - 1))
def test_accuracy_and_balanced_accuracy_equal_torchmetrics(n, k, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, k, generator=generator)
    targets = torch.randint(0, k, (n,), generator=generator)
    targets[::7] = -100
    assume(bool((targets != -100).any()))
    accuracy = Accuracy(k)
    accuracy.update(logits, targets)
    reference = MulticlassAccuracy(k, average="micro", ignore_index=-100)
    assert float(accuracy.compute()) == pytest.approx(float(reference(logits, targets)))
    # Macro accuracy agrees when every predicted class also occurs as a target.
    kept = targets != -100
    assume(set(logits[kept].argmax(-1).tolist()) <= set(targets[kept].tolist()))
    balanced = BalancedAccuracy(k)
    balanced.update(logits, targets)
    reference = MulticlassAccuracy(k, average="macro", ignore_index=-100)
    assert float(balanced.compute()) == pytest.approx(float(reference(logits, targets)))


def test_balanced_accuracy_skips_predicted_but_absent_classes_unlike_torchmetrics():
    preds = torch.tensor([0, 2, 1, 1])  # class 2 is predicted but never a target
    targets = torch.tensor([0, 0, 1, 1])
    logits = 10 * torch.nn.functional.one_hot(preds, 3).float()
    balanced = BalancedAccuracy(3)
    balanced.update(logits, targets)
    assert float(balanced.compute()) == pytest.approx((0.5 + 1.0) / 2)  # scikit-learn's
    assert float(MulticlassAccuracy(3, average="macro")(preds, targets)) == pytest.approx(0.5)


def test_suite_ece_with_ignore_index_equals_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(6, 50, 7, generator=generator)  # (batch, sequence, K)
    targets = torch.randint(0, 7, (6, 50), generator=generator)
    targets[:, -10:] = -100  # padding
    suite = CalibrationSuite(7)
    suite.update(logits, targets)
    reference = MulticlassCalibrationError(7, n_bins=15, norm="l1", ignore_index=-100)
    expected = reference(logits.reshape(-1, 7), targets.reshape(-1))
    assert float(suite.compute()["ece"]) == pytest.approx(float(expected), abs=1e-6)
