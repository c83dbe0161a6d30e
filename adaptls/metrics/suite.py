"""Every adaptls metric in one fused ``Metric``: one softmax and one row max per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from adaptls.checks import check_class_counts
from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions, check_options
from adaptls.metrics.adaece import adaptive_calibration_error
from adaptls.metrics.balanced_accuracy import balanced_accuracy
from adaptls.metrics.binning import (
    calibration_error,
    reliability_table,
    scatter_rows,
    top_label_table,
)
from adaptls.metrics.brier import brier_sum
from adaptls.metrics.classwise_ece import classwise_calibration_error, classwise_gaps
from adaptls.metrics.group_accuracy import group_accuracy, shot_groups
from adaptls.metrics.nll import nll_sum
from adaptls.metrics.per_class import per_class_summary

__all__ = ["CalibrationSuite"]


class CalibrationSuite(PredictionMetric):
    """Accuracy and calibration of a classifier, all from one pass over each batch.

    ``compute()`` returns a flat dict with the keys ``acc``, ``balanced_acc``,
    ``confidence``, ``ece``, ``mce``, ``adaece``, ``cw_ece``, ``nll``, ``brier`` and, when
    ``class_counts`` are given, ``acc_many``, ``acc_medium``, ``acc_few`` for the groups
    that have classes. Each value equals the one of the matching single metric
    (:class:`~adaptls.metrics.Accuracy`, ..., :class:`~adaptls.metrics.GroupAccuracy`) fed
    the same data; see those for the definitions and conventions.

    Args:
        num_classes: K.
        class_counts: (K,) *training* samples per class, for the long-tail groups.
        n_bins: equal-width (ECE, MCE, classwise ECE) and equal-mass (AdaECE) bins.
        group_thresholds: (low, high) of the many/medium/few-shot groups.
        **kwargs: ``input_type``, ``ignore_index``, ``validate_args`` and torchmetrics'
            options, as in :class:`~adaptls.metrics._base.PredictionMetric`.

    State: the (B, 3) top-label bin table, the (K, 3) class table, the (K, B) classwise
    gaps and two scalars, all summed across ranks; plus the confidences and correctness of
    every row for AdaECE ("cat" states, 12 bytes per row).

    Cost: beyond the softmax, one row max (top-1, :mod:`adaptls.metrics._inputs`), one sum
    of squares (Brier) and the classwise bin table, which must place every probability in
    a bin (:mod:`adaptls.metrics.classwise_ece`); the rest is per-row. The bar: an update
    costs no more than the torchmetrics updates of the four figures torchmetrics has
    (accuracy, balanced accuracy, ECE, MCE in one ``MetricCollection``), although it
    computes all of the figures above; ``scripts/bench_metrics.py`` prints the ratio
    (``make bench`` writes it to docs/performance.md).
    """

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | Tensor | None = None,
        n_bins: int = 15,
        group_thresholds: tuple[int, int] = (20, 100),
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        check_options(num_classes, self.input_type, n_bins)
        if class_counts is not None:
            class_counts = check_class_counts(class_counts, self.num_classes)
        self.n_bins = n_bins
        self.groups = {} if class_counts is None else shot_groups(class_counts, group_thresholds)
        self._add_sum_state("bin_table", n_bins, 3)
        self._add_sum_state("class_table", num_classes, 3)
        self._add_sum_state("classwise_gaps", num_classes, n_bins)
        self._add_sum_state("nll_total")
        self._add_sum_state("brier_total")
        self.add_state("confidences", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def _accumulate(self, batch: Predictions) -> None:
        # In place: `state += x` also goes through nn.Module.__setattr__, per state per chunk.
        self.bin_table.add_(top_label_table(batch.stats, self.n_bins))
        self.class_table.add_(scatter_rows(batch.targets, batch.stats, self.num_classes))
        self.classwise_gaps.add_(classwise_gaps(batch, self.n_bins))
        self.nll_total.add_(nll_sum(batch))
        self.brier_total.add_(brier_sum(batch))
        self.confidences.append(batch.confidence)
        self.correct.append(batch.correct)

    def compute(self) -> dict[str, Tensor]:
        count, confidence, correct = self.bin_table.sum(dim=0).unbind()
        if isinstance(self.confidences, list) and not self.confidences:  # never updated
            adaece = torch.tensor(float("nan"), device=self.device)
        else:
            adaece = adaptive_calibration_error(
                dim_zero_cat(self.confidences), dim_zero_cat(self.correct), self.n_bins
            )
        result = {
            "acc": correct / count,
            "balanced_acc": balanced_accuracy(self.class_table),
            "confidence": confidence / count,
            "ece": calibration_error(self.bin_table, "l1"),
            "mce": calibration_error(self.bin_table, "max"),
            "adaece": adaece.to(self.bin_table.dtype),
            "cw_ece": classwise_calibration_error(self.classwise_gaps, count),
            "nll": self.nll_total / count,
            "brier": self.brier_total / count,
        }
        return result | group_accuracy(self.class_table, self.groups)

    def per_class(self) -> dict[str, Tensor]:
        """Per-class ``acc``, mean top-1 ``confidence`` and ``count``, each (K,), synced.

        Rows are grouped by their TRUE class; ``confidence - acc`` is that class's
        calibration gap (positive: over-confident). NaN for classes with no rows.
        """
        with self.sync_context(should_sync=self.sync_on_compute):
            return per_class_summary(self.class_table.clone())

    def reliability(self) -> dict[str, Tensor]:
        """Per-bin mean ``confidence``, ``accuracy``, ``count`` and the ``edges``, synced."""
        with self.sync_context(should_sync=self.sync_on_compute):
            return reliability_table(self.bin_table.clone())
