"""The shortcuts that make a suite update cheap give the same values as the plain definitions:
top-1 from the residual's row max (ties, underflow), the one-hot top-label table, and the
classwise search for probabilities in bins >= 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.metrics import (
    Accuracy,
    BrierScore,
    CalibrationSuite,
    ClasswiseCalibrationError,
    ExpectedCalibrationError,
    NegativeLogLikelihood,
)
from adaptls.metrics._inputs import predictions
from adaptls.metrics.classwise_ece import (
    classwise_gaps,
    residual_bin_sums,
    search_group,
)


def value(metric, preds, targets, **kwargs):
    m = metric(preds.shape[-1], **kwargs)
    m.update(preds, targets)
    return m.compute()


def numpy_classwise_ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Kull et al.'s classwise ECE, straight from the definition (bins floor(p B), 1 on top)."""
    total = 0.0
    for k in range(probs.shape[1]):
        pk = probs[:, k]
        index = np.minimum(np.floor(pk * pk.dtype.type(n_bins)).astype(np.int64), n_bins - 1)
        hits = (y == k).astype(np.float64)
        for b in range(n_bins):
            m = index == b
            total += abs(hits[m].sum() - pk[m].astype(np.float64).sum())
    return total / (probs.shape[0] * probs.shape[1])


def batch_of(n: int, k: int, scale: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=generator)
    targets = torch.randint(0, k, (n,), generator=generator)
    return logits, targets


# ----------------------------------------------------------------- top-1 from the residual


def test_tied_logits_count_the_first_index_like_argmax():
    logits = torch.tensor([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [1.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 2])  # right, wrong (0 comes first), right, wrong
    assert float(value(Accuracy, logits, targets)) == 0.5
    batch = predictions(logits, targets, "logits")
    assert batch.correct.tolist() == [1.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(batch.confidence, torch.softmax(logits, -1).amax(-1))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    k=st.integers(2, 6),
    levels=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_correctness_equals_argmax_on_heavily_tied_inputs(n, k, levels, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, levels, (n, k), generator=generator).float()
    targets = torch.randint(0, k, (n,), generator=generator)
    probs = torch.softmax(logits, -1)
    for preds, input_type in ((logits, "logits"), (probs, "probs")):
        batch = predictions(preds, targets, input_type)
        expected = (probs.argmax(-1) == targets).float()
        assert torch.equal(batch.correct, expected), input_type
        assert torch.equal(batch.confidence, probs.amax(-1))


def test_probability_input_is_left_untouched():
    probs = torch.softmax(torch.randn(5, 4), -1)
    before = probs.clone()
    value(CalibrationSuite, probs, torch.tensor([0, 1, 2, 3, 0]), input_type="probs")
    assert torch.equal(probs, before)


def test_saturated_logits_give_their_true_nll():
    # p_y underflows to 0 in float32; the NLL is still the logit gap (plus log1p(...) ~ 0).
    logits = torch.tensor([[0.0, 200.0, 0.0], [150.0, 0.0, 160.0], [1.0, 2.0, 3.0]])
    targets = torch.tensor([0, 0, 2])
    x = logits.double()
    expected = float((torch.logsumexp(x, -1) - x[torch.arange(3), targets]).mean())
    got = float(value(NegativeLogLikelihood, logits, targets))
    assert got == pytest.approx(expected, rel=1e-6)
    assert got > 70  # (200 + 10 + 0.41) / 3


def test_brier_of_perfect_predictions_is_exactly_zero():
    probs = torch.eye(4)
    assert float(value(BrierScore, probs, torch.arange(4), input_type="probs")) == 0.0
    logits = 1000 * torch.eye(4)
    assert float(value(BrierScore, logits, torch.arange(4))) == 0.0


# ----------------------------------------------------------------- top-label table


def test_ece_of_confidences_on_and_next_to_every_edge_equals_reference():
    # The one-hot table must put c == e_b in bin b, the float just below it in bin b - 1.
    for n_bins in (1, 7, 15):
        edges = torch.linspace(0, 1, n_bins + 1)[1:-1]
        below = torch.nextafter(edges, torch.zeros(()))
        confidence = torch.cat((edges, below, torch.tensor([0.5, 1.0])))
        confidence = confidence[confidence >= 0.5]  # a valid top-1 of two classes
        probs = torch.stack((confidence, 1 - confidence), dim=1)
        targets = torch.arange(len(confidence)) % 2
        bins = torch.bucketize(confidence, torch.linspace(0, 1, n_bins + 1), right=True) - 1
        bins = bins.clamp(0, n_bins - 1)
        correct = (targets == 0).double()
        expected = sum(
            abs(float((correct[bins == b] - confidence[bins == b].double()).sum()))
            for b in range(n_bins)
        ) / len(confidence)
        got = float(
            value(ExpectedCalibrationError, probs, targets, input_type="probs", n_bins=n_bins)
        )
        assert got == pytest.approx(expected, abs=1e-7), n_bins


# ----------------------------------------------------------------- classwise search


@pytest.mark.parametrize("group", [2, 3, 4, 8])
@pytest.mark.parametrize(
    ("n", "k", "scale"), [(37, 11, 3.0), (64, 40, 30.0), (5, 9, 1.0), (50, 300, 0.1)]
)
def test_searching_groups_equals_scattering_everything(group, n, k, scale):
    logits, targets = batch_of(n, k, scale, seed=n * k)
    batch = predictions(logits, targets, "logits")
    dense = residual_bin_sums(batch, 15, group=1)
    torch.testing.assert_close(residual_bin_sums(batch, 15, group=group), dense, rtol=0, atol=2e-6)


@pytest.mark.parametrize(("n", "k", "scale"), [(300, 40, 3.0), (41, 1000, 8.0), (9, 500, 0.5)])
def test_many_classes_classwise_ece_equals_reference(n, k, scale):
    logits, targets = batch_of(n, k, scale, seed=k)
    probs = torch.softmax(logits, -1)
    expected = numpy_classwise_ece(probs.numpy(), targets.numpy())
    for preds, input_type in ((logits, "logits"), (probs, "probs")):
        got = float(value(ClasswiseCalibrationError, preds, targets, input_type=input_type))
        assert got == pytest.approx(expected, abs=1e-7), input_type


def test_many_classes_suite_equals_single_metrics_over_chunks(monkeypatch, sum_tol):
    from adaptls.metrics import _inputs

    logits, targets = batch_of(203, 257, 4.0, seed=1)
    whole = CalibrationSuite(257)
    whole.update(logits, targets)
    monkeypatch.setitem(_inputs.CHUNK_ELEMENTS, "cpu", 13 * 257)  # 13 rows per chunk
    monkeypatch.setattr(_inputs, "MIN_CHUNK_ROWS", 1)
    chunked = CalibrationSuite(257)
    chunked.update(logits, targets)
    single = ClasswiseCalibrationError(257)
    single.update(logits, targets)
    got, expected = chunked.compute(), whole.compute()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], **sum_tol(len(targets)))
    torch.testing.assert_close(got["cw_ece"], single.compute(), **sum_tol(len(targets)))


def test_classwise_gaps_fold_probability_one_into_the_top_bin():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    batch = predictions(probs, torch.tensor([0, 0, 1]), "probs")
    gaps = classwise_gaps(batch, 4)  # (K, B)
    assert gaps.shape == (2, 4)
    # class 0: p = 1 hit (0 in the top bin), p = 0 hit (+1 in bin 0), 0.5 miss (-0.5, bin 2)
    torch.testing.assert_close(gaps[0], torch.tensor([1.0, 0.0, -0.5, 0.0]))
    # class 1: p = 0 miss (0), p = 1 miss (-1 in the top bin), 0.5 hit (+0.5 in bin 2)
    torch.testing.assert_close(gaps[1], torch.tensor([0.0, 0.0, 0.5, -1.0]))


def test_search_group_grows_with_the_number_of_classes():
    assert [search_group(k) for k in (2, 10, 39, 40, 256, 1000)] == [1, 1, 1, 4, 10, 20]


def test_chunks_keep_at_least_min_chunk_rows(monkeypatch, sum_tol):
    from adaptls.metrics import _inputs

    logits, targets = batch_of(200, 50, 3.0, seed=3)
    whole = CalibrationSuite(50)
    whole.update(logits, targets)
    monkeypatch.setitem(_inputs.CHUNK_ELEMENTS, "cpu", 8 * 50)  # 8 rows by the budget
    chunked = CalibrationSuite(50)
    chunked.update(logits, targets)
    assert [len(c) for c in chunked.confidences] == [64, 64, 64, 8]
    for key, expected in whole.compute().items():
        torch.testing.assert_close(chunked.compute()[key], expected, **sum_tol(len(targets)))
