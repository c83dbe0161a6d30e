"""Mean top-1 confidence (compare with accuracy: the gap is overall over/under-confidence)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions

__all__ = ["MeanConfidence"]


class MeanConfidence(PredictionMetric):
    r"""Mean over rows of :math:`\max_k p_{ik}`."""

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_sum_state("total")
        self._add_sum_state("count")

    def _accumulate(self, batch: Predictions) -> None:
        self.total += batch.confidence.sum()
        self.count += batch.targets.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
