"""Per-class tables: rows grouped by their TRUE class.

A class table has one row per class and the columns of :mod:`adaptls.metrics.binning`:
``COUNT`` (rows of that true class), ``CONFIDENCE`` (sum of their top-1 confidences) and
``CORRECT`` (how many of them were predicted right). Per-class recall, balanced accuracy
and the long-tail group accuracies are all read off it.
"""

from __future__ import annotations

from torch import Tensor

from adaptls.metrics._inputs import Predictions
from adaptls.metrics.binning import scatter_rows

__all__ = ["class_table", "per_class_summary"]


def class_table(batch: Predictions, num_classes: int) -> Tensor:
    """The (K, 3) class table of one batch."""
    return scatter_rows(batch.targets, batch.stats, num_classes)


def per_class_summary(table: Tensor) -> dict[str, Tensor]:
    """Per-class ``acc`` (recall), ``confidence`` (mean top-1 confidence over rows of that
    true class) and ``count``, each (K,); NaN for classes with no rows."""
    count, confidence, correct = table.unbind(dim=1)
    return {"acc": correct / count, "confidence": confidence / count, "count": count}
