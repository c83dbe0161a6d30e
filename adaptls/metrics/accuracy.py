"""Top-1 accuracy."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions

__all__ = ["Accuracy"]


class Accuracy(PredictionMetric):
    """Fraction of rows whose argmax (first index on ties) is the target.

    Equals torchmetrics' ``MulticlassAccuracy(num_classes, average="micro")``.
    """

    higher_is_better = True
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_sum_state("correct")
        self._add_sum_state("count")

    def _accumulate(self, batch: Predictions) -> None:
        self.correct += batch.correct.sum()
        self.count += batch.targets.numel()

    def compute(self) -> Tensor:
        return self.correct / self.count
