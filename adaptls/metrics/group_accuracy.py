"""Many/medium/few-shot accuracy: long-tail groups of classes by training count.

With thresholds (low, high), default (20, 100) as in the long-tail literature (Liu et al.,
2019): a class is *many-shot* if it has more than ``high`` training samples, *medium-shot*
if it has ``low`` to ``high`` (inclusive), *few-shot* if it has fewer than ``low``. A group's
accuracy is the accuracy over the evaluated rows whose true class is in the group (on a
balanced test set this equals the mean recall of its classes). A group with no classes is
absent from the result; a group whose classes have no rows yet is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from adaptls.checks import check_class_counts
from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions
from adaptls.metrics.binning import CORRECT, COUNT
from adaptls.metrics.per_class import class_table

__all__ = ["GroupAccuracy", "group_accuracy", "shot_groups"]


def shot_groups(
    class_counts: Sequence[int] | Tensor, thresholds: tuple[int, int] = (20, 100)
) -> dict[str, Tensor]:
    """Boolean (K,) class masks of the non-empty groups among ``many``, ``medium``, ``few``."""
    counts = check_class_counts(class_counts)
    low, high = _check_thresholds(thresholds)
    masks = {
        "many": counts > high,
        "medium": (counts >= low) & (counts <= high),
        "few": counts < low,
    }
    return {name: mask for name, mask in masks.items() if bool(mask.any())}


def group_accuracy(table: Tensor, groups: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{"acc_<group>": accuracy}`` from a (K, 3) class table and :func:`shot_groups` masks."""
    count, correct = table[:, COUNT], table[:, CORRECT]
    result = {}
    for name, mask in groups.items():
        mask = mask.to(table.device)
        result[f"acc_{name}"] = correct[mask].sum() / count[mask].sum()
    return result


class GroupAccuracy(PredictionMetric):
    """Accuracy per long-tail group; ``compute()`` returns ``{"acc_many": ..., ...}``.

    Args:
        num_classes: K.
        class_counts: (K,) training samples per class (not the evaluated data's counts).
        thresholds: (low, high); see the module docstring.
    """

    higher_is_better = True
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | Tensor,
        thresholds: tuple[int, int] = (20, 100),
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        counts = check_class_counts(class_counts, self.num_classes)
        self.groups = shot_groups(counts, thresholds)
        self._add_sum_state("class_table", num_classes, 3)

    def _accumulate(self, batch: Predictions) -> None:
        self.class_table += class_table(batch, self.num_classes)

    def compute(self) -> dict[str, Tensor]:
        return group_accuracy(self.class_table, self.groups)


def _check_thresholds(thresholds: tuple[int, int]) -> tuple[int, int]:
    try:
        low, high = (int(t) for t in thresholds)
        ok = 0 <= low <= high and all(float(t) == int(t) for t in thresholds)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"thresholds must be (low, high) whole numbers with 0 <= low <= high, "
            f"got {thresholds!r}"
        )
    return low, high
