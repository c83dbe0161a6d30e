"""The one interface every smoothing strategy implements."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from adaptls.smoothing._fused import fused_soft_target_cross_entropy
from adaptls.smoothing.functional import (
    check_inputs,
    check_reduction,
    check_soft_target,
    dense_soft_targets,
)
from adaptls.smoothing.schedule import EpsilonSchedule


class SoftTarget(NamedTuple):
    """What a strategy decides for a batch of N rows.

    The soft target of row i is ``t_i = (1 - eps_i) * onehot(y_i) + eps_i * u_i`` with

    - ``epsilon``: a float, a 0-d tensor or an (N,) tensor (one value per row);
    - ``prior``: ``None`` (u_i uniform 1/K), a (K,) distribution shared by all rows, an
      (N, K) per-row distribution, or, with ``prior_index``, an (M, K) table;
    - ``prior_index``: optional (N,) int64: row i uses ``prior[prior_index[i]]``. The fused
      loss gathers these rows chunk by chunk, so a K x K class matrix (online smoothing)
      or a per-sample table (self-distillation) is never expanded to N x K.
    """

    epsilon: float | Tensor
    prior: Tensor | None = None
    prior_index: Tensor | None = None


class SmoothingStrategy(nn.Module):
    """Base class: turns hard labels into soft targets, trained by cross-entropy.

    A strategy is built from hyperparameters only (what a Hydra yaml holds); facts about
    the data (``num_classes``, ``class_counts``) arrive through :meth:`setup`. Subclasses
    implement :meth:`smoothing`, which sees logits flattened to (N, K) and targets to (N,)
    and returns a :class:`SoftTarget`. The loss is always the fused
    :func:`~adaptls.smoothing.soft_target_cross_entropy`; no strategy builds t itself.

    Hooks, all no-ops by default, called by the training loop:

    - :meth:`set_epoch` at the start of each training epoch (drives the epsilon schedule);
    - :meth:`observe` after each training step (stateful strategies collect statistics;
      only while ``self.training``);
    - :meth:`on_epoch_end` at the end of each training epoch (reduce across ranks here);
    - :meth:`on_validation_end` with the validation metrics of the epoch;
    - :meth:`log_values` returns ``{"smoothing/<name>": value}`` figures to log.

    State that must survive a checkpoint belongs in the module's ``state_dict``.

    Options every strategy takes (keyword-only, forwarded by subclasses' ``**kwargs``):

    - ``ignore_index``: targets with this value contribute nothing (default -100);
    - ``schedule``: an :class:`~adaptls.smoothing.schedule.EpsilonSchedule` (or its name,
      or a mapping), a factor s(epoch) in [0, 1] applied to whatever epsilon the strategy
      decides, so every schedule composes with every strategy (default: constant).

    Sample indices: :meth:`forward`, :meth:`soft_targets` and :meth:`observe` accept the
    batch's sample indices (positions in the training set, flattened like the targets);
    strategies that keep per-sample state (self-distillation) use them, others ignore them.
    """

    name: ClassVar[str] = "base"

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        schedule: str | Mapping[str, Any] | EpsilonSchedule | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.schedule = EpsilonSchedule.parse(schedule)
        self.num_classes: int | None = None
        self.class_counts: Tensor | None = None
        self.epoch = 0
        self.max_epochs: int | None = None

    # ------------------------------------------------------------------ data facts
    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        """Receive the facts about the data: number of classes, training counts per class."""
        k = _check_num_classes(num_classes)
        counts = None if class_counts is None else _check_class_counts(class_counts, k)
        self.num_classes, self.class_counts = k, counts

    def require_num_classes(self) -> int:
        if self.num_classes is None:
            raise RuntimeError(
                f"{type(self).__name__} needs num_classes: call setup(num_classes=...) first"
            )
        return self.num_classes

    # ------------------------------------------------------------------ the strategy
    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        """Decide epsilon and prior for (N, K) logits, (N,) targets and, when the data
        provides them, (N,) sample indices."""
        raise NotImplementedError

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        reduction: str = "mean",
        *,
        indices: Tensor | None = None,
    ) -> Tensor:
        """Soft-target cross-entropy of ``logits`` (..., K) against ``targets`` (...).

        ``indices`` (...): the samples' positions in the training set, if known.
        ``reduction`` as in :func:`~adaptls.smoothing.soft_target_cross_entropy`.
        """
        check_reduction(reduction)
        x, y = self._flatten_checked(logits, targets)
        loss = self.loss(x, y, indices, reduction)
        return loss.view(targets.shape) if reduction == "none" else loss

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        """The loss of checked, flattened (N, K) logits and (N,) targets.

        Default: the fused soft-target cross-entropy of :meth:`smoothing`'s target. A
        strategy whose loss is not a soft-target cross-entropy (focal, margin penalties)
        overrides this; ``reduction`` is ``"mean"`` over rows whose target is not
        ``ignore_index``, ``"sum"`` or ``"none"`` ((N,), 0 on ignored rows).
        """
        target = self._checked_target(x, y, indices)
        return fused_soft_target_cross_entropy(
            x,
            y,
            target.epsilon,
            target.prior,
            target.prior_index,
            self.ignore_index,
            reduction,
        )

    @torch.no_grad()
    def soft_targets(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> Tensor:
        """The dense soft target t, shaped like ``logits`` (for analysis and tests).

        Rows whose target is ``ignore_index`` are all zero.
        """
        x, y = self._flatten_checked(logits, targets)
        target = self._checked_target(x, y, indices)
        t = dense_soft_targets(
            y,
            x.shape[-1],
            target.epsilon,
            target.prior,
            prior_index=target.prior_index,
            ignore_index=self.ignore_index,
        )
        return t.view(logits.shape)

    # ------------------------------------------------------------------ hooks
    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Called at the start of each training epoch (0-based) of a ``max_epochs`` run."""
        self.epoch, self.max_epochs = int(epoch), max_epochs

    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        """Called after each training step with that step's (detached) logits, targets and
        sample indices (None when the data has none)."""

    def on_epoch_end(self) -> None:
        """Called at the end of each training epoch."""

    def on_validation_end(self, metrics: Mapping[str, float]) -> None:
        """Called after each validation epoch with its metrics (``val/...`` names)."""

    def log_values(self) -> dict[str, float]:
        """Figures to log, keyed ``smoothing/<name>``."""
        return {}

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description for ``metrics.json``: name, hyperparameters, figures."""
        summary = {"name": self.name, "hparams": self.hparams(), **self.log_values()}
        if self.schedule.name != "constant":
            summary["schedule"] = self.schedule.describe()
            summary["smoothing/schedule_factor"] = self.schedule_factor
        return summary

    @property
    def schedule_factor(self) -> float:
        """s(epoch) of the epsilon schedule for the current epoch."""
        return self.schedule.factor(self.epoch, self.max_epochs)

    def hparams(self) -> dict[str, Any]:
        """The constructor's hyperparameters (what a config sets)."""
        return {}

    def extra_repr(self) -> str:
        items = [f"{k}={v!r}" for k, v in self.hparams().items()]
        if self.schedule.name != "constant":
            items.append(f"schedule={self.schedule.describe()!r}")
        return ", ".join(items)

    # ------------------------------------------------------------------ input checks
    def _flatten_checked(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(N, K) logits and (N,) int64 targets, after checking them against the setup."""
        num_classes = self.require_num_classes()
        x, y = check_inputs(logits, targets, self.ignore_index)
        if x.shape[1] != num_classes:
            raise ValueError(
                f"logits have {x.shape[1]} classes but the strategy was set up "
                f"with num_classes={num_classes}"
            )
        return x, y

    def _checked_target(self, x: Tensor, y: Tensor, indices: Tensor | None) -> SoftTarget:
        if indices is not None:
            indices = indices.reshape(-1)
            if indices.numel() != y.numel():
                raise ValueError(
                    f"indices must hold one sample index per target ({y.numel()}), "
                    f"got {indices.numel()}"
                )
        target = self.smoothing(x, y, indices)
        prior, prior_index = check_soft_target(
            target.epsilon, target.prior, target.prior_index, y.shape, x.shape[1]
        )
        epsilon = target.epsilon
        factor = self.schedule_factor
        if factor != 1.0:  # the schedule scales the strategy's epsilon, whatever its shape
            epsilon = epsilon * factor
        return SoftTarget(epsilon, prior, prior_index)


def _check_num_classes(num_classes: int) -> int:
    try:
        k = operator.index(num_classes)
    except TypeError:
        k = None
    if k is None or isinstance(num_classes, bool) or k < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return k


def _check_class_counts(class_counts: Sequence[int] | Tensor, k: int) -> Tensor:
    """Training samples per class: k whole numbers >= 0, returned as an int64 tensor."""
    counts = torch.as_tensor(class_counts).detach().cpu()
    if counts.dim() != 1 or counts.numel() != k:
        raise ValueError(
            f"class_counts must have one entry per class ({k}), got shape {tuple(counts.shape)}"
        )
    bad = counts < 0
    if counts.is_floating_point():
        bad |= counts != counts.round()
    if bad.any():
        c = int(bad.nonzero()[0])
        raise ValueError(
            f"class_counts must be whole numbers >= 0, got {counts[c].item()!r} for class {c}"
        )
    return counts.to(torch.long)


def check_epsilon(name: str, value: float) -> float:
    """Validate a smoothing amount: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """Validate a number > 0 (e.g. an exponent)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Validate a name against the allowed ones."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
