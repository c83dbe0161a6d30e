"""The smoothing a soft-target strategy applied to its training rows (the driver's
``smoothing_amount()``).

Every training call of a strategy adds its epsilon, after the schedule, to per-epoch sums
of ``epsilon * rows`` and ``rows`` (rows whose target is not ``ignore_index``); a mixed
batch (mixup, cutmix) is scored twice and each call is weighted by its share (lam and
1 - lam), so each row counts once. The per-epoch sums are declared states (reduced across
ranks at the epoch's end and added to the run's totals); the smoothing amount is the
totals' ratio, the x axis of the strategies' comparison.

A float epsilon is recorded without a tensor operation: the batch's targets are kept and
their rows counted later, many batches in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from adaptls.smoothing._declared_state import DeclaredState

if TYPE_CHECKING:
    from adaptls.smoothing.base import SmoothingStrategy

#: The record's declared states (their names are those of a strategy's checkpoint).
RECORD_STATES = (
    "applied_epsilon_epoch",
    "applied_rows_epoch",
    "applied_epsilon_total",
    "applied_rows_total",
)

# Training batches with a float epsilon wait at most this long to be counted (see
# AppliedEpsilonRecord._record_applied): the count's cost spreads over 256 calls, and the
# targets kept alive meanwhile are at most 2 Mi int64 values (16 MiB).
_UNCOUNTED_BATCHES = 256
_UNCOUNTED_ELEMENTS = 1 << 21


class AppliedEpsilonRecord(DeclaredState):
    """The applied-epsilon record of :class:`~adaptls.smoothing.base.SmoothingStrategy`
    (a base of it: the record's methods are the strategy's own, so a training call
    reaches :meth:`_record_applied` with no extra lookup or call).

    Its sums are declared states; the rows it has kept uncounted are counted before the
    states are read (reduced across ranks, checkpointed) and dropped when they are reset.
    """

    ignore_index: int  # set by Strategy.__init__

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # this epoch's sums (per rank, reduced at its end) and the run's totals (identical
        # on every rank)
        self.add_state("applied_epsilon_epoch", torch.zeros((), dtype=torch.float64), reduce="sum")
        self.add_state("applied_rows_epoch", torch.zeros((), dtype=torch.float64), reduce="sum")
        self.add_state("applied_epsilon_total", torch.zeros((), dtype=torch.float64))
        self.add_state("applied_rows_total", torch.zeros((), dtype=torch.float64))
        # training batches with a float epsilon whose rows are not counted yet (see
        # _record_applied)
        self._uncounted = _Uncounted()
        self._applied_weight = 1.0  # set by record_weight while mixed_loss scores one part

    def _smoothing_amount(self) -> float | None:
        """Mean epsilon applied to the training rows of completed epochs, schedule factor
        included (for per-row priors, the weight on the prior); None before any epoch."""
        rows = float(self.applied_rows_total)
        return float(self.applied_epsilon_total) / rows if rows > 0 else None

    def _record_applied(self, epsilon: float | Tensor, y: Tensor) -> None:
        """Add this training batch's epsilon to the running sums (device-side, no sync).

        A float epsilon (uniform smoothing and every strategy with one scalar) launches no
        kernel here: the batch's targets are kept and counted later, many batches in one
        pass (:meth:`_count_uncounted`; at most :data:`_UNCOUNTED_BATCHES` batches or
        :data:`_UNCOUNTED_ELEMENTS` targets wait). Counting the rows a batch at a time
        (compare, sum, multiply, two adds) cost about 30 us per call on CPU, 15% of
        PyTorch's whole label-smoothing forward + backward at 128 x 10, and on a GPU five
        kernel launches. Under ``torch.compile`` or a CUDA graph capture the rows are
        counted at once (there, device operations are what gets recorded).
        """
        if (
            self._applied_weight == 1.0
            and not isinstance(epsilon, Tensor)
            and not (
                torch.compiler.is_compiling()
                or (y.is_cuda and torch.cuda.is_current_stream_capturing())
            )
        ):
            if self._uncounted.add(float(epsilon), y):
                self._count_uncounted()
            return
        counted = y != self.ignore_index
        rows = counted.sum(dtype=torch.float64)
        if isinstance(epsilon, Tensor) and epsilon.dim():
            total = (epsilon.detach().to(torch.float64) * counted).sum()
        else:  # a float or a 0-d tensor: no host-to-device copy of a Python number
            total = rows * (epsilon.detach() if isinstance(epsilon, Tensor) else epsilon)
        # A mixed batch is scored twice, weighted lam and 1 - lam: each row counts once.
        weight = self._applied_weight
        self.applied_epsilon_epoch += (total * weight).to(self.applied_epsilon_epoch.device)
        self.applied_rows_epoch += (rows * weight).to(self.applied_rows_epoch.device)

    def _count_uncounted(self) -> None:
        """Count the rows of the batches :meth:`_record_applied` kept: one pass over the
        targets of all batches that share an epsilon and a device (device-side, no sync)."""
        batches = self._uncounted.take()
        if not batches:
            return
        groups: dict[tuple[float, torch.device], list[Tensor]] = {}
        for epsilon, y, version in batches:
            if y._version != version:
                raise RuntimeError(
                    f"the targets of a training call of {type(self).__name__} were modified "
                    "in place before its rows were counted for the smoothing amount; pass "
                    "targets that stay unchanged after the call (e.g. y.clone())"
                )
            groups.setdefault((epsilon, y.device), []).append(y)
        device = self.applied_rows_epoch.device
        with torch.no_grad():
            for (epsilon, _), ys in groups.items():
                targets = ys[0] if len(ys) == 1 else torch.cat(ys)
                rows = (targets != self.ignore_index).sum(dtype=torch.float64).to(device)
                self.applied_rows_epoch += rows
                self.applied_epsilon_epoch += rows * epsilon

    def _close_applied_epoch(self) -> None:
        """Add this epoch's sums (already reduced across ranks) to the run's totals."""
        self.applied_epsilon_total += self.applied_epsilon_epoch
        self.applied_rows_total += self.applied_rows_epoch

    def _reduce_states(self, *names: str) -> None:
        self._count_uncounted()
        super()._reduce_states(*names)

    def _reset_states(self, *, per_epoch: bool = False) -> None:
        self._uncounted.clear()  # they belong to this epoch
        super()._reset_states(per_epoch=per_epoch)

    def get_extra_state(self) -> dict[str, Tensor]:
        self._count_uncounted()  # a checkpoint mid-epoch holds every batch seen so far
        return super().get_extra_state()


@contextmanager
def record_weight(strategy: SmoothingStrategy, weight: float) -> Iterator[None]:
    """Weight the applied-epsilon record of ``strategy`` and of the strategies inside it
    (a composed base) by ``weight`` for the duration (a weighted batch is counted at once,
    not kept for later)."""
    parts = [m for m in strategy.modules() if isinstance(m, AppliedEpsilonRecord)]
    for part in parts:
        part._applied_weight = weight
    try:
        yield
    finally:
        for part in parts:
            part._applied_weight = 1.0


class _Uncounted:
    """Training batches (epsilon, targets, the targets' version) whose rows are not counted
    yet. A plain object, not a module attribute that is reassigned: ``nn.Module``'s
    ``__setattr__`` alone costs a microsecond or two per call."""

    __slots__ = ("batches", "elements")

    def __init__(self) -> None:
        self.batches: list[tuple[float, Tensor, int]] = []
        self.elements = 0

    def add(self, epsilon: float, y: Tensor) -> bool:
        """Keep a batch; True when the kept ones should be counted now."""
        self.batches.append((epsilon, y, y._version))
        self.elements += y.numel()
        return len(self.batches) >= _UNCOUNTED_BATCHES or self.elements >= _UNCOUNTED_ELEMENTS

    def take(self) -> list[tuple[float, Tensor, int]]:
        batches = self.batches
        self.clear()
        return batches

    def clear(self) -> None:
        self.batches, self.elements = [], 0
