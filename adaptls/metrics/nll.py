r"""Negative log-likelihood (mean cross-entropy against the hard labels).

.. math:: \mathrm{NLL} = -\frac{1}{N}\sum_i \log p_{i y_i}

From logits it is computed stably without a log-softmax pass: with the top-1 class
:math:`\hat y_i` and its probability :math:`c_i \ge 1/K`,
:math:`\log p_{iy} = x_{iy} - \mathrm{logsumexp}(x_i) = x_{iy} - x_{i\hat y} + \log c_i`.
From probabilities, :math:`p_{iy}` is clamped to the dtype's smallest normal number, so a
row with :math:`p_{iy} = 0` costs about 87 nats (float32) instead of making the mean infinite.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions

__all__ = ["NegativeLogLikelihood", "nll_sum"]


def nll_sum(batch: Predictions) -> Tensor:
    """Sum over the batch's rows of :math:`-\\log p_{iy_i}`."""
    if batch.logits is None:
        tiny = torch.finfo(batch.target_prob.dtype).tiny
        return -batch.target_prob.clamp_min(tiny).log().sum()
    index = torch.stack((batch.prediction, batch.targets), dim=1)
    top, true = batch.logits.gather(1, index).to(batch.probs.dtype).unbind(dim=1)
    return (top - true - batch.confidence.log()).sum()


class NegativeLogLikelihood(PredictionMetric):
    """Mean NLL of the true class (see module docstring); streaming, two scalars of state."""

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_sum_state("total")
        self._add_sum_state("count")

    def _accumulate(self, batch: Predictions) -> None:
        self.total += nll_sum(batch)
        self.count += batch.targets.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
