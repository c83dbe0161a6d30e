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

The table is summed from the batch's residual :math:`r = p - \mathrm{onehot}(y)`:
:math:`g_{kb} = -\sum_{i \in B_{kb}} r_{ik}`, one scatter-add in which the true class
brings its -1 along. On CPU that scatter costs about two softmax passes for all N x K
probabilities; with many classes almost every probability is below 1/B (a row has at most
B - 1 at or above it), so :func:`residual_bin_sums` finds those first and scatters only them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.metrics._base import PredictionMetric
from adaptls.metrics._inputs import Predictions, check_options

__all__ = [
    "ClasswiseCalibrationError",
    "classwise_calibration_error",
    "classwise_gaps",
    "residual_bin_sums",
]

# Rows summarised together by a per-class max when looking for probabilities of 1/B or
# more, from this many classes on; with fewer classes such probabilities are too common
# for the search to pay. Both measured with scripts/bench_metrics.py on one CPU thread.
SEARCH_GROUP = 4
SEARCH_MIN_CLASSES = 128


def residual_bin_sums(batch: Predictions, n_bins: int, group: int | None = None) -> Tensor:
    r"""(B + 1, K) table: entry (b, k) sums the :math:`r_{ik}` with
    :math:`\lfloor p_{ik} B \rfloor = b`; row B collects p = 1 (callers fold it into B - 1).

    ``group`` (``None``: :data:`SEARCH_GROUP` from :data:`SEARCH_MIN_CLASSES` classes on,
    else 1) rows at a time share one max per class, and only groups whose max reaches 1/B
    are scattered; every other probability is in bin 0, whose sum is the column sum minus
    what was scattered. ``group=1`` scatters every entry.
    """
    r, y, p_y = batch.residual, batch.targets, batch.target_prob
    k = r.shape[1]
    if group is None:
        group = SEARCH_GROUP if k >= SEARCH_MIN_CLASSES else 1
    true_bins = (p_y * n_bins).long()
    table = r.new_zeros(n_bins + 1, k)
    if group == 1:
        index = (r * n_bins).long()
        # The true class holds p_y - 1; its bin comes from p_y.
        index.scatter_(1, y.unsqueeze(1), true_bins.unsqueeze(1))
        return table.scatter_add_(0, index, r)
    where = _marked_entries(r, n_bins, group)
    # True classes hold p_y - 1 <= 0: they never mark a group, count as 0 where a marked
    # group brings them along, and go in by themselves.
    values = r.view(-1)[where].clamp_min_(0)
    flat = table.view(-1)
    flat.index_add_(0, (values * n_bins).long().mul_(k).add_(where % k), values)
    flat.index_add_(0, true_bins.mul_(k).add_(y), p_y - 1)
    # Everything else is a probability below 1/B: bin 0.
    table[0] += r.sum(dim=0) - table.sum(dim=0)
    return table


def _marked_entries(r: Tensor, n_bins: int, group: int) -> Tensor:
    """Flat positions in ``r`` (N, K) of every probability that may reach bin 1: those of
    the (row offset, class) cells whose max over ``group`` rows does, and all rows past the
    last whole group. Rows i, i + N/group, ... share a cell, so the max is one fast
    reduction over the leading dimension."""
    n, k = r.shape
    whole = n - n % group
    rest = torch.arange(whole * k, n * k, device=r.device)
    if whole == 0:
        return rest
    cells = whole // group * k
    peak = r[:whole].reshape(group, cells).amax(dim=0)
    hot = (peak.mul_(n_bins) >= 1).nonzero().squeeze(1)
    starts = torch.arange(0, whole * k, cells, device=r.device).unsqueeze(1)
    return torch.cat(((hot + starts).view(-1), rest))


def classwise_gaps(batch: Predictions, n_bins: int) -> Tensor:
    """The (K, B) signed gaps :math:`g_{kb}` of one batch."""
    sums = residual_bin_sums(batch, n_bins)
    sums[n_bins - 1] += sums[n_bins]
    return sums[:n_bins].T.neg()


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
