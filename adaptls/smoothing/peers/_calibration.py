"""What the calibration losses (focal, FLSD, dual focal, MbLS, ACLS, MDCA) share.

They are not soft-target cross-entropies: each overrides :meth:`SmoothingStrategy.loss`
and computes a per-row loss (0 on ignored rows) that :func:`reduce_rows` reduces the way
the fused loss does ("mean" over the counted rows, 0 when none is counted), without a host
sync. Their figures are kept as detached 0-d tensors (logged without a device sync by
Lightning) and turned into floats only by :meth:`CalibrationLoss.summary`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.smoothing.base import SmoothingStrategy


class CalibrationLoss(SmoothingStrategy):
    """Base of the losses that override :meth:`loss`.

    - ``soft_targets()`` raises a :class:`NotImplementedError` naming the strategy, unless
      the subclass implements :meth:`smoothing` (CE + penalty losses return the target of
      their cross-entropy term);
    - figures recorded with :meth:`_record` during training (``self.training``; the
      validation loss does not overwrite them) are returned by :meth:`log_values`;
    - the epsilon ``schedule`` every strategy accepts scales the loss's own strength
      (gamma, alpha or beta: each subclass says which), so s(epoch) = 0 gives plain CE.

    Subclasses implement :meth:`_loss`; :meth:`loss` runs it and, only if it fails on
    an index, names the first target outside ``[0, K)`` in a ValueError (read on the
    error path only: no host sync on the way to a loss; on CUDA a bad target trips the
    device-side assertion of ``F.cross_entropy``/``gather``, as in the fused loss).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._figures: dict[str, Tensor] = {}

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        try:
            return self._loss(x, y, indices, reduction)
        except (IndexError, RuntimeError) as err:
            _explain_bad_targets(y, x.shape[1], self.ignore_index, err)
            raise

    def _loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        """The loss of checked (N, K) logits and (N,) targets (see :meth:`loss`)."""
        raise NotImplementedError

    def soft_targets(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> Tensor:
        if type(self).smoothing is SmoothingStrategy.smoothing:
            raise NotImplementedError(
                f"{type(self).__name__} (smoothing={self.name}) has no soft target: its loss "
                f"reweights the log-likelihood instead of scoring a target distribution; "
                f"call the strategy for its loss"
            )
        return super().soft_targets(logits, targets, indices)

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


def _explain_bad_targets(y: Tensor, k: int, ignore_index: int, cause: BaseException) -> None:
    """Raise a ValueError naming the first target outside [0, K) and not ignore_index;
    return if there is none. Reads the values: for the error path only."""
    if y.device.type == "meta":
        return
    bad = ((y < 0) | (y >= k)) & (y != ignore_index)
    if bad.any():
        raise ValueError(
            f"target {y[bad][0].item()} is out of range: allowed are 0..{k - 1} "
            f"or ignore_index={ignore_index}"
        ) from cause


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
