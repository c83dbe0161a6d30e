"""Non-finite training losses, found without a device sync per step."""

from __future__ import annotations

from array import array

import torch
import torch.distributed as dist
from torch import Tensor

# Losses kept before they are folded, on the device, into the first non-finite one: a few
# operations per this many steps, and at most this many 0-d tensors alive.
_WINDOW = 256
_NONE = torch.iinfo(torch.int64).max  # "no non-finite loss" as a position


class FiniteLossCheck:
    """Finds the first non-finite training loss of an epoch, reading the device once.

    ``if not torch.isfinite(loss)`` in every training step is a host read of the loss, so
    on a GPU the host waits for the step's kernels every step. Here each step only keeps
    its detached loss (:meth:`record`: no kernel launch); every :data:`_WINDOW` steps the
    kept losses are folded, on the device, into the position and value of the first
    non-finite one; :meth:`first_non_finite` reads that once (at the end of an epoch and
    before a checkpoint is written). The price: a run whose loss turns NaN trains on for
    the rest of the epoch before it stops, and nothing is written from that epoch on.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._window: list[Tensor] = []
        self._batches, self._steps = array("q"), array("q")  # per recorded step
        self._first: tuple[Tensor, Tensor] | None = None  # (position, loss) on the device

    def record(self, loss: Tensor, batch_idx: int, global_step: int) -> None:
        """Keep one training step's loss (no kernel launch, no host read)."""
        self._window.append(loss.detach())
        self._batches.append(batch_idx)
        self._steps.append(global_step)
        if len(self._window) >= _WINDOW:
            self._fold()

    def _fold(self) -> None:
        """Fold the kept losses into the first non-finite position and value (device-side)."""
        if not self._window:
            return
        losses = torch.stack(self._window).float()
        start = len(self._steps) - len(losses)
        self._window = []
        positions = torch.arange(start, start + len(losses), device=losses.device)
        position = torch.where(torch.isfinite(losses), _NONE, positions).amin()
        value = losses[(position - start).clamp(0, len(losses) - 1)]
        if self._first is not None:  # an earlier window's position, if any, comes first
            earlier = self._first[0] < _NONE
            position = torch.where(earlier, self._first[0], position)
            value = torch.where(earlier, self._first[1], value)
        self._first = (position, value)

    def first_non_finite(self, *, across_ranks: bool = False) -> tuple[int, int, float] | None:
        """(batch index, global step, loss) of the first non-finite loss recorded since the
        last :meth:`reset`, or None. One host read; ``across_ranks``: the earliest over
        every process of the default group (a collective: every rank must call it)."""
        self._fold()
        if self._first is None:
            return None
        position, value = self._first
        if across_ranks and dist.is_available() and dist.is_initialized():
            position = position.clone()
            dist.all_reduce(position, op=dist.ReduceOp.MIN)
        p = int(position)
        if p == _NONE:
            return None
        # another rank's position: its value is not here (same batch and step, though)
        loss = float(value) if p == int(self._first[0]) else float("nan")
        return self._batches[p], self._steps[p], loss
