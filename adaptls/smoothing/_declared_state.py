"""State a strategy declares once (:meth:`DeclaredState.add_state`), in the manner of
torchmetrics' ``Metric.add_state``: a default value and, for per-rank statistics of an
epoch, how ranks combine them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from adaptls.smoothing._distributed import REDUCE_OPS, all_reduce


@dataclass(frozen=True)
class StateSpec:
    """How a declared piece of strategy state behaves (see :meth:`DeclaredState.add_state`)."""

    default: Tensor
    reduce: str | None


class DeclaredState(nn.Module):
    """A module whose state is declared with :meth:`add_state` (a base of
    :class:`~adaptls.smoothing.base.Strategy`).

    Declared states are plain tensor attributes: checkpointed (through
    ``get_extra_state``), moved with the module's device (never its dtype), and not
    registered buffers, so DDP's per-step buffer broadcast from rank 0 cannot overwrite
    another rank's statistics.
    """

    def __init__(self) -> None:
        super().__init__()
        self._states: dict[str, StateSpec] = {}

    def add_state(self, name: str, default: Tensor, *, reduce: str | None = None) -> None:
        """Declare a piece of state, set to a copy of ``default``.

        ``reduce``: ``"sum"``, ``"max"`` or ``"min"`` for per-rank statistics of one epoch,
        reduced across ranks at the end of each training epoch (the driver's
        ``on_epoch_end``) and then reset to ``default``; None
        for state that every rank derives identically (e.g. from reduced statistics) and
        that persists. Declaring a name again (``setup`` with another K) replaces it.
        """
        if reduce is not None and reduce not in REDUCE_OPS:
            raise ValueError(f"reduce must be one of {REDUCE_OPS} or None, got {reduce!r}")
        if name in self._buffers or name in self._parameters:
            raise ValueError(f"{name!r} is already a buffer or parameter of {type(self).__name__}")
        self._states[name] = StateSpec(default.detach().clone(), reduce)
        setattr(self, name, default.detach().clone())

    def _reduce_states(self, *names: str) -> None:
        """Reduce the named declared states across ranks now, each by its declared op.

        A collective: every rank must call it at the same point. The driver calls it at
        each epoch's end; a strategy that reduces validation statistics calls it in its
        ``on_validation_end``, which the driver calls on every rank.
        """
        for name in names:
            spec = self._states[name]
            if spec.reduce is None:
                raise ValueError(f"state {name!r} was declared without a reduce op")
            all_reduce(getattr(self, name), spec.reduce)

    def _reset_states(self, *, per_epoch: bool = False) -> None:
        """Set declared states back to their defaults (only the reduced, per-epoch ones
        with ``per_epoch=True``), on their current device."""
        for name, spec in self._states.items():
            if spec.reduce is not None or not per_epoch:
                current = getattr(self, name)
                setattr(self, name, spec.default.to(current.device, copy=True))

    def get_extra_state(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).detach().clone() for name in self._states}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - set(self._states)
        if unknown:
            raise ValueError(
                f"checkpoint holds state {sorted(unknown)} that {type(self).__name__} does not "
                f"declare (declared: {sorted(self._states)}); was it set up with the same data?"
            )
        for name, value in state.items():
            current, spec = getattr(self, name), self._states[name]
            if value.shape != spec.default.shape:
                raise ValueError(
                    f"checkpointed {type(self).__name__}.{name} has shape {tuple(value.shape)}, "
                    f"expected {tuple(spec.default.shape)} (different number of classes "
                    "or training samples?)"
                )
            setattr(self, name, value.to(current.device, spec.default.dtype, copy=True))

    def _apply(self, fn: Any, recurse: bool = True) -> DeclaredState:
        # Declared states follow the module's device; their dtype is fixed (float64
        # accumulators must not become half precision under `module.half()`).
        super()._apply(fn, recurse)
        for name, spec in getattr(self, "_states", {}).items():
            setattr(self, name, fn(getattr(self, name)).to(spec.default.dtype))
        return self
