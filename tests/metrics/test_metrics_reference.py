"""Every metric against a direct NumPy implementation of its definition, on random inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from adaptls.metrics import (
    Accuracy,
    AdaptiveCalibrationError,
    BalancedAccuracy,
    BrierScore,
    CalibrationSuite,
    ClasswiseCalibrationError,
    ExpectedCalibrationError,
    GroupAccuracy,
    MaxCalibrationError,
    MeanConfidence,
    NegativeLogLikelihood,
)

# ----------------------------------------------------------------- NumPy references


def top_label(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64)


def binned_gap(values, hits, index, n_bins):
    """sum_b |B_b|/N * |mean(hits in b) - mean(values in b)| and the max over filled bins."""
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        m = index == b
        if m.any():
            gap = abs(hits[m].mean() - values[m].astype(np.float64).mean())
            total += m.mean() * gap
            worst = max(worst, gap)
    return total, worst


def equal_width_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # torchmetrics' edges; an edge value goes to the bin above it, 1.0 to the top bin.
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.from_numpy(conf).dtype).numpy()
    return np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)


def ref_ece(probs, y, n_bins=15):
    conf, correct = top_label(probs, y)
    return binned_gap(conf, correct, equal_width_bins(conf, n_bins), n_bins)[0]


def ref_mce(probs, y, n_bins=15):
    conf, correct = top_label(probs, y)
    return binned_gap(conf, correct, equal_width_bins(conf, n_bins), n_bins)[1]


def ref_adaece(probs, y, n_bins=15):
    conf, correct = top_label(probs, y)
    order = np.lexsort((correct, conf))  # by confidence, then wrong before right
    index = np.empty(len(y), dtype=np.int64)
    index[order] = np.arange(len(y)) * n_bins // len(y)
    return binned_gap(conf, correct, index, n_bins)[0]


def ref_cw_ece(probs, y, n_bins=15):
    per_class = []
    for k in range(probs.shape[1]):
        pk = probs[:, k]
        index = np.minimum(np.floor(pk * pk.dtype.type(n_bins)).astype(np.int64), n_bins - 1)
        per_class.append(binned_gap(pk, (y == k).astype(np.float64), index, n_bins)[0])
    return float(np.mean(per_class))


def ref_brier(probs, y):
    onehot = np.eye(probs.shape[1])[y]
    return float(((probs.astype(np.float64) - onehot) ** 2).sum(axis=1).mean())


def ref_nll(logits, y):
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def ref_group_acc(probs, y, counts, low=20, high=100):
    correct = probs.argmax(axis=1) == y
    groups = {"many": counts > high, "medium": (counts >= low) & (counts <= high)}
    groups["few"] = counts < low
    rows = {name: classes[y] for name, classes in groups.items() if classes.any()}
    return {f"acc_{name}": correct[r].mean() if r.any() else np.nan for name, r in rows.items()}


# ----------------------------------------------------------------- inputs


@st.composite
def logit_batches(draw, max_rows: int = 80, max_classes: int = 9):
    """Random logits at scales from near-uniform (0.1) to saturated (30: exact 0 and 1)."""
    n = draw(st.integers(1, max_rows))
    k = draw(st.integers(2, max_classes))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0, 10.0, 30.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = scale * torch.randn(n, k, generator=generator)
    if draw(st.booleans()):  # a class never seen in the targets
        targets = torch.randint(0, k - 1, (n,), generator=generator)
    else:
        targets = torch.randint(0, k, (n,), generator=generator)
    return logits, targets


def value(metric, preds, targets, **kwargs):
    m = metric(preds.shape[-1], **kwargs)
    m.update(preds, targets)
    return m.compute()


REFERENCES = [
    (ExpectedCalibrationError, ref_ece),
    (MaxCalibrationError, ref_mce),
    (AdaptiveCalibrationError, ref_adaece),
    (ClasswiseCalibrationError, ref_cw_ece),
    (BrierScore, ref_brier),
    (Accuracy, lambda p, y: float(top_label(p, y)[1].mean())),
    (MeanConfidence, lambda p, y: float(p.max(axis=1).astype(np.float64).mean())),
    (BalancedAccuracy, lambda p, y: balanced_accuracy_score(y, p.argmax(axis=1))),
]


# ----------------------------------------------------------------- tests


@pytest.mark.filterwarnings("ignore::UserWarning:sklearn")
@settings(max_examples=60, deadline=None)
@given(batch=logit_batches())
def test_metrics_equal_numpy_reference(batch):
    logits, targets = batch
    probs, y = torch.softmax(logits, dim=-1).numpy(), targets.numpy()
    for metric, reference in REFERENCES:
        for preds, input_type in ((logits, "logits"), (torch.from_numpy(probs), "probs")):
            got = float(value(metric, preds, targets, input_type=input_type))
            assert got == pytest.approx(reference(probs, y), abs=1e-6), (metric, input_type)
    assert float(value(NegativeLogLikelihood, logits, targets)) == pytest.approx(
        ref_nll(logits.numpy(), y), rel=1e-5, abs=1e-5
    )


@settings(max_examples=40, deadline=None)
@given(batch=logit_batches(), data=st.data())
def test_group_accuracy_equals_reference(batch, data):
    logits, targets = batch
    k = logits.shape[1]
    counts = np.array(data.draw(st.lists(st.integers(0, 300), min_size=k, max_size=k)))
    low = data.draw(st.integers(0, 120))
    high = data.draw(st.integers(low, 150))
    got = value(GroupAccuracy, logits, targets, class_counts=counts, thresholds=(low, high))
    # Rows of a group whose classes never occur are NaN on both sides.
    expected = ref_group_acc(torch.softmax(logits, -1).numpy(), targets.numpy(), counts, low, high)
    assert got.keys() == expected.keys()
    for key, number in expected.items():
        assert float(got[key]) == pytest.approx(number, abs=1e-12, nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(batch=logit_batches(max_rows=60), data=st.data())
def test_streaming_in_several_updates_equals_one_update(batch, data, sum_tol):
    logits, targets = batch
    cuts = sorted(data.draw(st.lists(st.integers(0, len(targets)), max_size=4)))
    bounds = [0, *cuts, len(targets)]
    counts = ([150, 50, 5] * 3)[: logits.shape[1]]
    whole = CalibrationSuite(logits.shape[1], class_counts=counts)
    whole.update(logits, targets)
    streamed = CalibrationSuite(logits.shape[1], class_counts=counts)
    for start, stop in itertools.pairwise(bounds):
        streamed.update(logits[start:stop], targets[start:stop])  # empty chunks included
    expected, got = whole.compute(), streamed.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], **sum_tol(len(targets)), equal_nan=True)


def probability_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-made probabilities: exact 0 and 1, uniform rows, confidences exactly on edges."""
    edges = torch.linspace(0, 1, 16)
    rows = [
        [1.0, 0.0, 0.0],  # confidence 1: the top bin
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1 / 3, 1 / 3, 1 / 3],  # ties: argmax is the first class
        [0.5, 0.5, 0.0],
    ]
    rows += [[float(e), float(1 - e), 0.0] for e in edges[8:15]]  # confidence on an edge
    targets = [0, 2, 2, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    return torch.tensor(rows), torch.tensor(targets)


@pytest.mark.filterwarnings("ignore::UserWarning:sklearn")
def test_exact_zeros_ones_ties_and_edges_equal_reference():
    probs, targets = probability_rows()
    p, y = probs.numpy(), targets.numpy()
    for metric, reference in REFERENCES:
        got = float(value(metric, probs, targets, input_type="probs"))
        assert got == pytest.approx(reference(p, y), abs=1e-7), metric
    # p_y = 0 exactly: clamped, finite.
    nll = float(value(NegativeLogLikelihood, probs, targets, input_type="probs"))
    assert np.isfinite(nll) and nll > 80 / len(y)


def test_single_row_fills_one_bin():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    for target, gap in ((0, 0.3), (1, 0.7)):
        y = torch.tensor([target])
        for metric in (ExpectedCalibrationError, MaxCalibrationError, AdaptiveCalibrationError):
            assert float(value(metric, probs, y, input_type="probs")) == pytest.approx(gap)


def test_classes_absent_from_targets():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    targets = torch.tensor([0, 1, 1])  # class 2 never occurs
    assert float(value(BalancedAccuracy, probs, targets, input_type="probs")) == 0.5 * (1 + 0.5)
    # Class 2 still counts in the classwise mean: its ECE is its mean probability 0.1.
    cw = float(value(ClasswiseCalibrationError, probs, targets, input_type="probs"))
    assert cw == pytest.approx(ref_cw_ece(probs.numpy(), targets.numpy()))
    per_class = CalibrationSuite(3, input_type="probs")
    per_class.update(probs, targets)
    summary = per_class.per_class()
    assert summary["count"].tolist() == [1, 2, 0]
    assert torch.isnan(summary["acc"][2]) and torch.isnan(summary["confidence"][2])


def test_group_with_no_classes_is_absent():
    logits, targets = torch.randn(20, 4), torch.randint(0, 4, (20,))
    only_many = value(GroupAccuracy, logits, targets, class_counts=[500, 400, 300, 200])
    assert list(only_many) == ["acc_many"]
    no_medium = value(GroupAccuracy, logits, targets, class_counts=[500, 400, 3, 2])
    assert list(no_medium) == ["acc_many", "acc_few"]
    # Default thresholds: > 100 many, 20..100 medium (inclusive), < 20 few.
    edges = value(GroupAccuracy, logits, targets, class_counts=[101, 100, 20, 19])
    assert list(edges) == ["acc_many", "acc_medium", "acc_few"]


def test_empty_input_gives_nan_not_an_error():
    metric = CalibrationSuite(3)
    metric.update(torch.randn(4, 3), torch.full((4,), -100))  # every row ignored
    metric.update(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))
    values = metric.compute()
    assert all(torch.isnan(v) for v in values.values()), values
