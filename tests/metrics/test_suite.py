"""CalibrationSuite: the fused metric equals the single metrics, and its extra views."""

from __future__ import annotations

import pytest
import torch

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

SINGLE = {
    "acc": Accuracy,
    "balanced_acc": BalancedAccuracy,
    "confidence": MeanConfidence,
    "ece": ExpectedCalibrationError,
    "mce": MaxCalibrationError,
    "adaece": AdaptiveCalibrationError,
    "cw_ece": ClasswiseCalibrationError,
    "nll": NegativeLogLikelihood,
    "brier": BrierScore,
}
COUNTS = [500, 300, 120, 100, 60, 20, 19, 5]  # many: 3, medium: 3, few: 2


def batches(num_batches=3, k=8, seed=0, shape=(40, 3)):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num_batches):
        logits = 4 * torch.randn(*shape, k, generator=generator)
        targets = torch.randint(0, k, shape, generator=generator)
        targets[..., 0] = -100  # ignored rows
        yield logits, targets


def test_keys_are_exactly_the_documented_names():
    plain = CalibrationSuite(8)
    grouped = CalibrationSuite(8, class_counts=COUNTS)
    for suite in (plain, grouped):
        for logits, targets in batches():
            suite.update(logits, targets)
    assert list(plain.compute()) == [*SINGLE]
    assert list(grouped.compute()) == [*SINGLE, "acc_many", "acc_medium", "acc_few"]
    only_head = CalibrationSuite(8, class_counts=[1000] * 8)
    only_head.update(*next(batches()))
    assert list(only_head.compute()) == [*SINGLE, "acc_many"]


def test_suite_equals_single_metrics_over_several_batches(sum_tol):
    suite = CalibrationSuite(8, class_counts=COUNTS)
    singles = {key: metric(8) for key, metric in SINGLE.items()}
    groups = GroupAccuracy(8, class_counts=COUNTS)
    for logits, targets in batches():
        suite.update(logits, targets)
        groups.update(logits, targets)
        for metric in singles.values():
            metric.update(logits, targets)
    got = suite.compute()
    rows = sum(len(targets.reshape(-1)) for _, targets in batches())
    expected = {key: metric.compute() for key, metric in singles.items()} | groups.compute()
    for key, value in expected.items():
        # Equal up to float32 summation order (per bin vs per batch).
        torch.testing.assert_close(got[key], value.to(got[key].dtype), **sum_tol(rows))


def test_leading_dimensions_and_ignored_rows_are_flattened_away():
    logits, targets = next(batches(shape=(5, 7, 3)))
    keep = targets != -100
    nested, flat = CalibrationSuite(8), CalibrationSuite(8)
    nested.update(logits, targets)
    flat.update(logits[keep], targets[keep])
    for key, value in flat.compute().items():
        torch.testing.assert_close(nested.compute()[key], value)


def test_probability_input_equals_logit_input():
    logits, targets = next(batches())
    from_logits, from_probs = CalibrationSuite(8), CalibrationSuite(8, input_type="probs")
    from_logits.update(logits, targets)
    from_probs.update(torch.softmax(logits, -1), targets)
    got, expected = from_probs.compute(), from_logits.compute()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_dtypes_accumulate_in_float32_or_float64():
    logits, targets = next(batches())
    reference = CalibrationSuite(8)
    reference.update(logits, targets)
    expected = reference.compute()
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.bfloat16, 5e-2), (torch.float16, 1e-2)):
        suite = CalibrationSuite(8)
        suite.update(logits.to(dtype), targets)
        for key, value in suite.compute().items():
            assert value.dtype == torch.float64
            torch.testing.assert_close(value, expected[key], rtol=tolerance, atol=tolerance)


def test_per_class_view():
    suite = CalibrationSuite(8)
    all_logits, all_targets = [], []
    for logits, targets in batches():
        suite.update(logits, targets)
        keep = targets != -100
        all_logits.append(logits[keep])
        all_targets.append(targets[keep])
    logits, targets = torch.cat(all_logits), torch.cat(all_targets)
    probs = torch.softmax(logits, -1)
    view = suite.per_class()
    assert set(view) == {"acc", "confidence", "count"}
    for k in range(8):
        rows = targets == k
        assert float(view["count"][k]) == rows.sum()
        assert float(view["acc"][k]) == pytest.approx(
            float((probs[rows].argmax(-1) == k).mean(dtype=torch.float64))
        )
        assert float(view["confidence"][k]) == pytest.approx(float(probs[rows].amax(-1).mean()))


def test_reliability_view():
    suite = CalibrationSuite(8, n_bins=10)
    for logits, targets in batches():
        suite.update(logits, targets)
    bins = suite.reliability()
    assert set(bins) == {"confidence", "accuracy", "count", "edges"}
    assert bins["edges"].shape == (11,) and bins["count"].shape == (10,)
    assert float(bins["count"].sum()) == 3 * 40 * 2  # one ignored row in three
    filled = bins["count"] > 0
    assert torch.isnan(bins["accuracy"][~filled]).all()
    inside = (bins["confidence"][filled] >= bins["edges"][:-1][filled]) & (
        bins["confidence"][filled] <= bins["edges"][1:][filled]
    )
    assert inside.all()
    ece = (bins["count"][filled] * (bins["accuracy"] - bins["confidence"])[filled].abs()).sum()
    assert float(ece / bins["count"].sum()) == pytest.approx(float(suite.compute()["ece"]))


def test_forward_returns_batch_values_and_accumulates():
    suite = CalibrationSuite(8)
    first, second = list(batches(2))
    batch_value = suite(*first)
    suite(*second)
    alone = CalibrationSuite(8)
    alone.update(*first)
    torch.testing.assert_close(batch_value["ece"], alone.compute()["ece"])
    both = CalibrationSuite(8)
    both.update(*first)
    both.update(*second)
    for key, value in both.compute().items():
        torch.testing.assert_close(suite.compute()[key], value)
    suite.reset()
    suite.update(*first)
    torch.testing.assert_close(suite.compute()["nll"], alone.compute()["nll"])


@pytest.mark.parametrize(
    ("kwargs", "preds", "targets", "message"),
    [
        (
            {},
            torch.randn(4, 5),
            torch.zeros(4, dtype=torch.long),
            r"preds must have shape \(\.\.\., 3\)",
        ),
        ({}, torch.randn(4, 3), torch.zeros(5, dtype=torch.long), "targets its leading shape"),
        ({}, torch.randn(4, 3), torch.zeros(4), "targets must be an integer tensor"),
        (
            {},
            torch.zeros(4, 3, dtype=torch.long),
            torch.zeros(4, dtype=torch.long),
            "floating-point",
        ),
        ({}, torch.randn(2, 3), torch.tensor([0, 3]), r"class indices in \[0, 3\).*\[3\]"),
        ({}, torch.randn(2, 3), torch.tensor([0, -1]), r"\[-1\]"),
        ({"input_type": "probs"}, torch.full((2, 3), 0.5), torch.tensor([0, 1]), "sum to 1"),
        ({"input_type": "probs"}, torch.tensor([[1.5, -0.5, 0.0]]), torch.tensor([0]), r"\[0, 1\]"),
        ({}, torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([0]), "NaN"),
        ({}, torch.tensor([[0.0, float("inf"), 1.0]]), torch.tensor([0]), "NaN"),
    ],
)
def test_bad_update_input_is_named(kwargs, preds, targets, message):
    with pytest.raises((ValueError, TypeError), match=message):
        CalibrationSuite(3, **kwargs).update(preds, targets)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"num_classes": 3, "n_bins": 0}, "n_bins must be an int >= 1"),
        ({"num_classes": 3, "input_type": "softmax"}, "input_type must be one of"),
        ({"num_classes": 3, "class_counts": [1, 2]}, r"one entry per class \(3\)"),
        ({"num_classes": 3, "class_counts": [1, -2, 3]}, "whole numbers >= 0"),
        (
            {"num_classes": 3, "class_counts": [1, 2, 3], "group_thresholds": (50, 10)},
            "low <= high",
        ),
    ],
)
def test_bad_constructor_argument_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CalibrationSuite(**kwargs)


def test_rows_in_many_chunks_equal_one_chunk(monkeypatch, sum_tol):
    from adaptls.metrics import _inputs

    logits, targets = next(batches(shape=(60, 4)))
    whole = CalibrationSuite(8, class_counts=COUNTS)
    whole.update(logits, targets)
    monkeypatch.setitem(_inputs.CHUNK_ELEMENTS, "cpu", 7 * 8)  # 7 rows per chunk
    monkeypatch.setattr(_inputs, "MIN_CHUNK_ROWS", 1)
    chunked = CalibrationSuite(8, class_counts=COUNTS)
    chunked.update(logits, targets)
    assert len(chunked.confidences) == -(-int((targets != -100).sum()) // 7)
    for key, value in whole.compute().items():
        torch.testing.assert_close(chunked.compute()[key], value, **sum_tol(len(targets)))
    for view in ("per_class", "reliability"):
        torch.testing.assert_close(
            getattr(chunked, view)(), getattr(whole, view)(), **sum_tol(len(targets)),
            equal_nan=True,
        )  # fmt: skip
