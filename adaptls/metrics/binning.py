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

import torch
from torch import Tensor

from adaptls.metrics._inputs import Predictions

__all__ = [
    "CONFIDENCE",
    "CORRECT",
    "COUNT",
    "bin_edges",
    "calibration_error",
    "reliability_table",
    "row_stats",
    "scatter_rows",
    "top_label_bins",
]

COUNT, CONFIDENCE, CORRECT = 0, 1, 2


def bin_edges(n_bins: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The B + 1 edges of B equal-width bins on [0, 1] (torchmetrics' edges)."""
    return torch.linspace(0, 1, n_bins + 1, dtype=dtype, device=device)


def top_label_bins(confidence: Tensor, n_bins: int) -> Tensor:
    """Bin index in [0, B) of each confidence: left-closed bins, top bin closed at 1."""
    edges = bin_edges(n_bins, dtype=confidence.dtype, device=confidence.device)
    return (torch.bucketize(confidence, edges, right=True) - 1).clamp_(0, n_bins - 1)


def row_stats(batch: Predictions) -> Tensor:
    """(N, 3) per-row columns ``COUNT`` (1), ``CONFIDENCE``, ``CORRECT``, ready to scatter."""
    ones = torch.ones_like(batch.confidence)
    return torch.stack((ones, batch.confidence, batch.correct), dim=1)


def scatter_rows(index: Tensor, rows: Tensor, size: int) -> Tensor:
    """Sum the rows of ``rows`` (N, C) into ``size`` groups given by ``index`` (N,)."""
    return rows.new_zeros(size, rows.shape[1]).index_add_(0, index, rows)


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
