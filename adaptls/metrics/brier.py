r"""Brier score, multiclass convention.

.. math:: \mathrm{Brier} = \frac{1}{N}\sum_i \sum_k (p_{ik} - \mathbb{1}[y_i = k])^2
          = \frac{1}{N}\sum_i \Big(\sum_k p_{ik}^2 - 2 p_{i y_i} + 1\Big) \in [0, 2].

This is Brier's original multiclass score (summed over classes, averaged over rows). Some
papers and libraries divide it by K as well, or score only the true class; compare with care.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions

__all__ = ["BrierScore", "brier_sum"]


def brier_sum(batch: Predictions) -> Tensor:
    """Sum over the batch's rows of :math:`\\sum_k (p_k - \\mathrm{onehot}_k)^2`."""
    flat = batch.residual.view(-1)
    return torch.dot(flat, flat)


class BrierScore(PredictionMetric):
    """Mean multiclass Brier score (see module docstring); streaming, two scalars of state."""

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 2.0

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_sum_state("total")
        self._add_sum_state("count")

    def _accumulate(self, batch: Predictions) -> None:
        self.total += brier_sum(batch)
        self.count += batch.targets.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
