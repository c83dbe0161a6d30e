r"""Equal-width confidence bins and the calibration errors read off them.

Edges are ``torch.linspace(0, 1, B + 1)`` in the working dtype, exactly torchmetrics'
edges. Bins are left-closed: a confidence c goes to bin b with :math:`e_b \le c < e_{b+1}`
(a confidence exactly on an inner edge goes to the bin *above* it, like torchmetrics'
``bucketize(..., right=True) - 1``). The top bin is closed, :math:`e_{B-1} \le c \le 1`:
torchmetrics instead puts c = 1 into a hidden extra bin (torchmetrics issue 3510), so the
two agree exactly unless some confidence is exactly 1.

A bin table has one row per bin and the columns ``COUNT`` (rows in the bin), ``CONFIDENCE``
(sum of their top-1 confidences) and ``CORRECT`` (how many were right). With
:math:`n_b, s_b, a_b` those columns and N the total count,

.. math::
    \mathrm{ECE} = \sum_b \frac{n_b}{N}\Big|\frac{a_b}{n_b} - \frac{s_b}{n_b}\Big|
                 = \frac{1}{N}\sum_b |a_b - s_b|, \qquad
    \mathrm{MCE} = \max_{b:\, n_b > 0} \frac{|a_b - s_b|}{n_b}.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from adaptls.metrics._inputs import CONFIDENCE, CORRECT, COUNT

__all__ = [
    "CONFIDENCE",
    "CORRECT",
    "COUNT",
    "bin_edges",
    "calibration_error",
    "reliability_table",
    "scatter_rows",
    "top_label_table",
]


def bin_edges(n_bins: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The B + 1 edges of B equal-width bins on [0, 1] (torchmetrics' edges)."""
    return torch.linspace(0, 1, n_bins + 1, dtype=dtype, device=device)


def top_label_table(stats: Tensor, n_bins: int) -> Tensor:
    """(B, 3) bin table of a batch's (3, N) ``stats`` (rows COUNT, CONFIDENCE, CORRECT)."""
    # Row j of `reached` is [c >= e_j], with the lower edges and +inf as thresholds (the
    # top bin is closed), so adjacent differences one-hot encode the bin exactly, and one
    # small matmul sums the stats per bin: fewer and cheaper ops than bucketize + scatter.
    thresholds = _lower_edges_and_inf(n_bins, stats.dtype, stats.device)
    reached = torch.ge(stats[CONFIDENCE], thresholds, out=stats.new_empty(0))
    return (reached[:-1] - reached[1:]) @ stats.T


@functools.lru_cache(maxsize=64)
def _lower_edges_and_inf(n_bins: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(B + 1, 1) column of thresholds: the B lower edges, then +inf."""
    edges = bin_edges(n_bins, dtype=dtype, device=device)
    return torch.cat((edges[:n_bins], edges.new_full((1,), float("inf")))).unsqueeze(1)


def scatter_rows(index: Tensor, stats: Tensor, size: int) -> Tensor:
    """(size, 3) table: row g sums the columns of ``stats`` (3, N) whose ``index`` is g."""
    # Summing along dim 1 of a (3, N) block is about twice as fast as along dim 0 of (N, 3).
    return stats.new_zeros(stats.shape[0], size).index_add_(1, index, stats).T


def calibration_error(bin_table: Tensor, norm: str = "l1") -> Tensor:
    """ECE (``norm="l1"``) or MCE (``norm="max"``) of a (B, 3) bin table; NaN when empty."""
    count, confidence, correct = bin_table.unbind(dim=1)
    gap = (correct - confidence).abs()
    if norm == "l1":
        return gap.sum() / count.sum()
    if norm == "max":
        filled = count > 0
        if not bool(filled.any()):
            return bin_table.new_tensor(float("nan"))
        return (gap[filled] / count[filled]).max()
    raise ValueError(f"norm must be 'l1' or 'max', got {norm!r}")


def reliability_table(bin_table: Tensor) -> dict[str, Tensor]:
    """Per-bin ``confidence`` (mean), ``accuracy``, ``count`` and the B + 1 ``edges``.

    Empty bins have NaN mean confidence and accuracy (undefined, not 0).
    """
    count, confidence, correct = bin_table.unbind(dim=1)
    n_bins = bin_table.shape[0]
    return {
        "confidence": confidence / count,
        "accuracy": correct / count,
        "count": count,
        "edges": bin_edges(n_bins, dtype=bin_table.dtype, device=bin_table.device),
    }
