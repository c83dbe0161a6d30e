r"""Negative log-likelihood (mean cross-entropy against the hard labels).

.. math:: \mathrm{NLL} = -\frac{1}{N}\sum_i \log p_{i y_i}

From logits it costs no log-softmax pass: :math:`\log p_{iy}` is the log of the softmax's
:math:`p_{iy}` wherever that is a float with full precision (:math:`p_{iy} \ge`
``tiny / eps``, about 1e-31 in float32), and for the rare rows below that it is computed from
the logits, :math:`\log p_{iy} = x_{iy} - \mathrm{logsumexp}(x_i) = x_{iy} - x_{i\hat y}
+ \log c_i` with the top-1 class :math:`\hat y_i` and its probability :math:`c_i \ge 1/K`,
so saturated logits give their true, large NLL.
From probabilities, :math:`p_{iy}` is clamped to the dtype's smallest normal number, so a
row with :math:`p_{iy} = 0` costs about 87 nats (float32) instead of making the mean infinite.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions

__all__ = ["NegativeLogLikelihood", "nll_sum", "perplexity"]


def perplexity(nll: float) -> float:
    """Perplexity exp(NLL) of a mean NLL per token in nats (inf where exp overflows)."""
    return math.exp(nll) if nll < 709.0 else math.inf


def nll_sum(batch: Predictions) -> Tensor:
    """Sum over the batch's rows of :math:`-\\log p_{iy_i}`."""
    return -batch.target_log_prob.sum()


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
