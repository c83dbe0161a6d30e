r"""Classwise expected calibration error (Kull et al., 2019).

For every class k, bin all N probabilities :math:`p_{ik}` (not just the top-1) into B
equal-width bins and compare, per bin, the mean of :math:`p_{ik}` with the frequency of
:math:`y_i = k`; average the resulting ECEs over all K classes:

.. math::
    \mathrm{cwECE} = \frac{1}{K}\sum_k \sum_b \frac{|B_{kb}|}{N}
        \big|\mathrm{freq}_{kb}(y = k) - \mathrm{mean}_{kb}(p_k)\big|
    = \frac{1}{KN}\sum_{k,b} \Big|\sum_{i \in B_{kb}} (\mathbb{1}[y_i = k] - p_{ik})\Big| .

The right-hand form needs only the (K, B) table of signed gaps
:math:`g_{kb} = \sum_{i \in B_{kb}} (\mathbb{1}[y_i = k] - p_{ik})`, summed across ranks.

Binning: :math:`b = \lfloor p \cdot B \rfloor` computed in the working dtype, with p = 1 in
the top bin. This is one multiply per probability (the N x K part is the costly one); it
agrees with the top-label edges of :mod:`adaptls.metrics.binning` except for probabilities
within a few ulps of an inner edge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions, check_options

__all__ = ["ClasswiseCalibrationError", "classwise_calibration_error", "classwise_gaps"]


def classwise_gaps(batch: Predictions, n_bins: int) -> Tensor:
    """The (K, B) signed gaps :math:`g_{kb}` of one batch."""
    probs, num_classes = batch.probs, batch.probs.shape[1]
    # Row B collects p == 1 (floor gives B) and is folded into the top bin below: cheaper
    # than clamping all N x K indices.
    gaps = probs.new_zeros(n_bins + 1, num_classes)
    gaps.scatter_add_(0, (probs * n_bins).long(), probs).neg_()
    hit_bins = (batch.target_prob * n_bins).long()
    gaps.index_put_((hit_bins, batch.targets), torch.ones_like(batch.target_prob), accumulate=True)
    gaps[n_bins - 1] += gaps[n_bins]
    return gaps[:n_bins].T


def classwise_calibration_error(gaps: Tensor, count: Tensor) -> Tensor:
    """Classwise ECE from the (K, B) gap table and the number of rows N."""
    return gaps.abs().sum() / (count * gaps.shape[0])


class ClasswiseCalibrationError(PredictionMetric):
    """Classwise ECE, streaming with a (K, B) state; see the module docstring for the math.

    Classes absent from the data still count: their ECE is the mean probability the model
    gives them (every bin's frequency of ``y == k`` is 0).
    """

    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, num_classes: int, n_bins: int = 15, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        check_options(num_classes, self.input_type, n_bins)
        self.n_bins = n_bins
        self._add_sum_state("gaps", num_classes, n_bins)
        self._add_sum_state("count")

    def _accumulate(self, batch: Predictions) -> None:
        self.gaps += classwise_gaps(batch, self.n_bins)
        self.count += batch.targets.numel()

    def compute(self) -> Tensor:
        return classwise_calibration_error(self.gaps, self.count)
