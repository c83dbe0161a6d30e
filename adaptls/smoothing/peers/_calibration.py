"""What the calibration losses (focal, FLSD, dual focal, MbLS, ACLS, MDCA) share.

They are not soft-target cross-entropies: each is a
:class:`~adaptls.smoothing.base.Criterion` whose ``loss`` computes a per-row loss (0 on
ignored rows) that :func:`reduce_rows` reduces the way the fused loss does ("mean" over the counted rows, 0 when none is counted), without a host
sync. Their figures are kept as detached 0-d tensors (logged without a device sync by
Lightning) and turned into floats only by :meth:`CalibrationLoss.summary`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.smoothing.base import Criterion


class CalibrationLoss(Criterion):
    """What the calibration losses share beyond :class:`Criterion`.

    - figures recorded with :meth:`_record` during training (``self.training``; the
      validation loss does not overwrite them) are returned by :meth:`log_values`;
    - :meth:`summary` turns those 0-d tensors into floats.

    Subclasses implement :meth:`~Criterion.loss`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._figures: dict[str, Tensor] = {}

    def _record(self, **figures: Tensor) -> None:
        if self.training:
            self._figures = {f"smoothing/{k}": v.detach() for k, v in figures.items()}

    def log_values(self) -> dict[str, Any]:
        return dict(self._figures)

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        for key, value in summary.items():
            if torch.is_tensor(value):
                summary[key] = float(value)
        return summary


def compute_dtype(x: Tensor) -> Tensor:
    """float16/bfloat16 logits are accumulated in float32 (float64 stays float64), as the
    fused loss does."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def counted_rows(y: Tensor, ignore_index: int) -> Tensor:
    return y != ignore_index


def reduce_rows(rows: Tensor, counted: Tensor, reduction: str) -> Tensor:
    """(N,) per-row losses, 0 on ignored rows: "mean" over the counted rows (0 when none
    is counted, never NaN), "sum", or "none"."""
    if reduction == "none":
        return rows
    total = rows.sum()
    if reduction == "sum":
        return total
    return total / counted.sum().clamp_min(1).to(rows.dtype)


def one_minus_exp(log_p: Tensor) -> Tensor:
    """1 - p from log p, exact near p = 1 (where ``1 - p.exp()`` loses every digit)."""
    return -torch.expm1(log_p)


def focal_weight(one_minus_p: Tensor, gamma: float | Tensor) -> Tensor:
    """(1 - p)^gamma, with 1 - p clamped to the dtype's smallest normal number.

    At p = 1 the factor's derivative gamma (1 - p)^(gamma - 1) is infinite for gamma < 1
    and would meet a zero log-likelihood (0 * inf = NaN); clamped, that row's loss is
    tiny^gamma * 0 = 0 with a zero gradient. Elsewhere the clamp never binds.
    """
    return one_minus_p.clamp_min(torch.finfo(one_minus_p.dtype).tiny).pow(gamma)
