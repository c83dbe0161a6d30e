"""Balanced (macro) accuracy: the mean per-class recall."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions
from adaptls.metrics.binning import CORRECT, COUNT
from adaptls.metrics.per_class import class_table

__all__ = ["BalancedAccuracy", "balanced_accuracy"]


def balanced_accuracy(table: Tensor) -> Tensor:
    """Mean recall over the classes that have at least one row in a (K, 3) class table."""
    count, correct = table[:, COUNT], table[:, CORRECT]
    present = count > 0
    return (correct[present] / count[present]).mean()


class BalancedAccuracy(PredictionMetric):
    """Mean over classes present in the targets of that class's recall; (K, 3) state.

    This is scikit-learn's ``balanced_accuracy_score``. torchmetrics'
    ``MulticlassAccuracy(average="macro")`` agrees when every predicted class also occurs
    in the targets; a class that is predicted but never a target counts there as recall 0,
    here not at all (its recall is undefined).
    """

    higher_is_better = True
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_sum_state("class_table", num_classes, 3)

    def _accumulate(self, batch: Predictions) -> None:
        self.class_table += class_table(batch, self.num_classes)

    def compute(self) -> Tensor:
        return balanced_accuracy(self.class_table)
