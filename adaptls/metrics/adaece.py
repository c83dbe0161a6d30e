r"""Adaptive calibration error: ECE with equal-mass instead of equal-width bins.

Sort the N top-1 confidences, cut the sorted list into B consecutive bins of
:math:`\lfloor N/B \rfloor` or :math:`\lceil N/B \rceil` rows (sorted position j goes to
bin :math:`\lfloor jB/N \rfloor`), then
:math:`\mathrm{AdaECE} = \sum_b \frac{|B_b|}{N}|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`.
Rows are sorted by (confidence, correct), so tied confidences are ordered wrong-first and
the value depends only on the multiset of (confidence, correct) pairs, not on the order the
data arrived in or how it was split across ranks.

The bin edges are quantiles of *all* the data, so this metric cannot stream: it keeps every
row's confidence and correctness (two "cat" states, gathered across ranks at compute:
views of each batch's (3, N) per-row stats, so 12 bytes per row in float32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions, check_options

__all__ = ["AdaptiveCalibrationError", "adaptive_calibration_error"]


def adaptive_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int) -> Tensor:
    """AdaECE of (N,) confidences and (N,) 0/1 correctness; NaN when N = 0."""
    n = confidence.numel()
    if n == 0:
        return confidence.new_tensor(float("nan"))
    order = torch.argsort(correct, stable=True)
    order = order[torch.argsort(confidence[order], stable=True)]
    bins = torch.arange(n, device=confidence.device) * n_bins // n
    rows = torch.stack((confidence[order], correct[order].to(confidence.dtype)), dim=1)
    sums = rows.new_zeros(n_bins, 2).index_add_(0, bins, rows)
    return (sums[:, 1] - sums[:, 0]).abs().sum() / n


class AdaptiveCalibrationError(PredictionMetric):
    """AdaECE with ``n_bins`` equal-mass bins; keeps all confidences (see module docstring)."""

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_classes: int, n_bins: int = 15, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        check_options(num_classes, self.input_type, n_bins)
        self.n_bins = n_bins
        self.add_state("confidences", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def _accumulate(self, batch: Predictions) -> None:
        self.confidences.append(batch.confidence)
        self.correct.append(batch.correct)

    def compute(self) -> Tensor:
        if isinstance(self.confidences, list) and not self.confidences:  # never updated
            return torch.tensor(float("nan"), device=self.device)
        return adaptive_calibration_error(
            dim_zero_cat(self.confidences), dim_zero_cat(self.correct), self.n_bins
        )
