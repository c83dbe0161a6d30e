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
probabilities; with many classes almost every probability is below 1/B (a row sums to 1, so
at most B of its entries reach it), so :func:`residual_bin_sums` finds those first and
scatters only them, from 40 classes on: it is what keeps a suite update within its bar
(no slower than the torchmetrics updates) at 4096 x 100 on CPU, as
``scripts/bench_metrics.py --parts`` shows (with and without it). On accelerators every entry is
scattered (in parallel; finding the marked cells would need a host sync).
"""

from __future__ import annotations

import math
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
    "search_group",
]


def search_group(num_classes: int) -> int:
    """Rows that :func:`residual_bin_sums` summarises together for ``num_classes`` (1: none).

    Searching costs about one scan per cell (N K / G of them) plus one scatter per entry of
    a marked cell (about G h N of them, with h ~ 1-3 probabilities of 1/B or more per row):
    least near G = sqrt(2 K / 5) with the per-entry costs measured on CPU. Below G = 4
    (K < 40) scattering everything is as fast and simpler.
    """
    group = math.isqrt(2 * num_classes // 5)
    return group if group >= 4 else 1


def residual_bin_sums(batch: Predictions, n_bins: int, group: int | None = None) -> Tensor:
    r"""(K, B + 1) table: entry (k, b) sums the :math:`r_{ik}` with
    :math:`\lfloor p_{ik} B \rfloor = b`; column B collects p = 1 (callers fold it into B - 1).

    ``group`` rows at a time share one max per class, and only the groups whose max can
    reach bin 1 are scattered (rows past the last whole group: all). ``None``:
    :func:`search_group` on CPU, 1 (scatter every entry) elsewhere.
    """
    r, y, p_y = batch.residual, batch.targets, batch.target_prob
    n, k = r.shape
    if group is None:
        # Accelerators scatter in parallel, and nonzero would cost a host sync there.
        group = search_group(k) if r.device.type == "cpu" else 1
    group = min(group, n)  # a chunk of a few rows of very many classes: one group
    if group <= 1:
        return _scatter_all(r, y, p_y, n_bins)
    whole = n - n % group
    table = _scatter_marked(r[:whole], y[:whole], p_y[:whole], n_bins, group)
    if whole < n:
        table += _scatter_all(r[whole:], y[whole:], p_y[whole:], n_bins)
    return table


def _scatter_all(r: Tensor, y: Tensor, p_y: Tensor, n_bins: int) -> Tensor:
    """:func:`residual_bin_sums` of some rows, scattering every entry."""
    index = (r * n_bins).long()
    # The true class holds p_y - 1; its bin comes from p_y.
    index.scatter_(1, y.unsqueeze(1), (p_y * n_bins).long().unsqueeze(1))
    return r.new_zeros(n_bins + 1, r.shape[1]).scatter_add_(0, index, r).T


def _scatter_marked(r: Tensor, y: Tensor, p_y: Tensor, n_bins: int, group: int) -> Tensor:
    """:func:`residual_bin_sums` of ``group`` * m rows, scattering only what may leave bin 0.

    Rows i, i + m, ... share a cell per class, so the max of a cell is one fast reduction
    over the leading dimension. A cell whose max reaches 1/B (a hair below, so rounding in
    p B never hides one) is scattered whole; everything else is in bin 0, whose sum is the
    column sum minus what was scattered. True classes hold p_y - 1 <= 0: they never mark a
    cell, count as 0 where a marked cell brings them along, and go in by themselves.
    """
    k, width = r.shape[1], n_bins + 1
    cells = r.reshape(group, -1)
    hot = (cells.amax(dim=0) >= (1 - 2**-20) / n_bins).nonzero().squeeze(1)
    values = cells.index_select(1, hot).clamp_min_(0)
    table = r.new_zeros(k, width)
    flat = table.view(-1)
    # int32 indices where they fit: int64 arithmetic on every marked entry costs more than
    # the scatter itself.
    dtype = torch.int32 if table.numel() < 2**31 else torch.int64
    index = (values * n_bins).to(dtype).add_((hot % k).to(dtype).mul_(width))
    flat.index_add_(0, index.view(-1), values.view(-1))
    flat.index_add_(0, (p_y * n_bins).long().add_(y * width), p_y - 1)
    table[:, 0] += r.sum(dim=0) - table.sum(dim=1)
    return table


def classwise_gaps(batch: Predictions, n_bins: int) -> Tensor:
    """The (K, B) signed gaps :math:`g_{kb}` of one batch."""
    sums = residual_bin_sums(batch, n_bins)
    sums[:, n_bins - 1] += sums[:, n_bins]
    return sums[:, :n_bins].neg_()


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
