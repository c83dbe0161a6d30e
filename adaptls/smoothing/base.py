"""The one interface every smoothing strategy implements."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from adaptls.checks import (
    check_choice,
    check_class_counts,
    check_nonnegative,
    check_num_classes,
    check_positive,
    check_probability,
)
from adaptls.losses._fused import fused_soft_target_cross_entropy
from adaptls.losses._fused_linear import fused_linear_soft_target_cross_entropy
from adaptls.losses.checks import (
    check_inputs,
    check_reduction,
    check_soft_target,
    explain_bad_indices,
    explained_indices,
    flatten_linear_inputs,
)
from adaptls.losses.soft_target import dense_soft_targets
from adaptls.smoothing._applied import AppliedEpsilonRecord, record_weight
from adaptls.smoothing._declared_state import StateSpec
from adaptls.smoothing._registry import REGISTRY, register_strategy
from adaptls.smoothing.figures import FigureSpec
from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.smoothing.validation_pass import ValidationPass

# Argument checks a strategy's constructor uses (adaptls.checks; re-exported here for authors).
__all__ = [
    "REGISTRY",
    "SmoothingStrategy",
    "SoftTarget",
    "StateSpec",
    "check_choice",
    "check_epsilon",
    "check_nonnegative",
    "check_positive",
]


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


class SmoothingStrategy(AppliedEpsilonRecord):
    """Base class: turns hard labels into soft targets, trained by cross-entropy.

    A strategy is built from hyperparameters only (what a Hydra yaml holds); facts about
    the data (``num_classes``, ``class_counts``) arrive through :meth:`setup`. Subclasses
    implement :meth:`smoothing`, which sees logits flattened to (N, K) and targets to (N,)
    and returns a :class:`SoftTarget`. The loss is always the fused
    :func:`~adaptls.smoothing.soft_target_cross_entropy`; no strategy builds t itself.

    Hooks, all no-ops by default, called by the training loop through a
    :class:`~adaptls.smoothing.driver.StrategyDriver`, which calls each on every strategy
    of the strategy tree (a wrapper's base included, parent first):

    - :meth:`set_epoch` at the start of each training epoch (drives the epsilon schedule);
    - :meth:`observe` after each training step (stateful strategies collect statistics;
      only while ``self.training``);
    - :meth:`on_epoch_end` once at the end of each training epoch, on every rank: it reduces
      the declared per-epoch states across ranks, calls :meth:`update_state` (what a
      stateful strategy overrides) and resets the per-epoch states;
    - :meth:`on_validation_end` with the :class:`ValidationPass` of a validation pass
      *during fit* (never for a later ``validate``/``test``: evaluation does not move state);
    - :meth:`log_values` returns ``{"smoothing/<name>": value}`` figures to log (floats or
      0-d tensors; tensors are logged without a host sync).

    What a strategy says about itself, read by the rest of adaptls: its ``name`` (setting
    one registers the class, :mod:`adaptls.smoothing._registry`; ``smoothing=<name>``),
    :meth:`hparams` (read from the constructor), :meth:`summary` (the metrics.json
    record), :meth:`figures` (pictures for the run's ``plots/``), :meth:`smoothing_amount`
    (the comparison's x axis) and ``search_space`` (the default of ``hparams_search``).

    Other entry points: :meth:`linear_loss` takes the classifier layer's inputs instead of
    the (N, V) logits (language models; a strategy that cannot run this way says why in
    :attr:`linear_unsupported`, one whose smoothing reads logit values overrides
    :meth:`linear_flat_loss`); :meth:`mixed_loss` takes a mixed batch (mixup, cutmix).

    State: a strategy declares each piece once with :meth:`add_state` (its default value,
    and ``reduce="sum"`` for per-rank statistics of an epoch; the mechanism is
    :class:`~adaptls.smoothing._declared_state.DeclaredState`, a base of this class,
    with :meth:`reduce_states` and :meth:`reset_states`). Declared states are plain
    tensor attributes: checkpointed (through ``get_extra_state``), moved with the module's
    device (never its dtype), not registered buffers (so DDP's per-step buffer broadcast
    from rank 0 cannot overwrite another rank's statistics), and identical on every rank
    after :meth:`on_epoch_end`. A checkpoint written mid-epoch holds rank 0's share of the
    epoch's statistics only.

    Every strategy also records the smoothing it applied to training rows (epsilon after
    the schedule, averaged over rows): :meth:`smoothing_amount` (the record is
    :class:`~adaptls.smoothing._applied.AppliedEpsilonRecord`, a base of this class).

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
    #: Default search space of ``hparams_search`` when no
    #: ``conf/search_space/<search>/<name>.yaml`` exists: hyperparameter -> an expression of
    #: the Optuna sweeper (``"interval(0.0, 0.4)"``, ``"tag(log, interval(0.1, 10))"``,
    #: ``"choice(1, 5)"``). Empty: such a search stops with an error naming both ways.
    search_space: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """Register every subclass that sets its own ``name`` (``smoothing=<name>``).

        A shared base that sets no ``name`` (e.g. ``CalibrationLoss``) is not registered;
        ``register=False`` keeps a named class out (a test's toy strategy).
        """
        super().__init_subclass__(**kwargs)
        if register and "name" in cls.__dict__:
            register_strategy(cls)

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
        k = check_num_classes(num_classes)
        counts = None if class_counts is None else check_class_counts(class_counts, k)
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
        if torch.compiler.is_compiling():
            loss = self.loss(x, y, indices, reduction)
        else:
            try:
                loss = self.loss(x, y, indices, reduction)
            except (RuntimeError, IndexError) as err:
                # target values are not checked up front (a host sync): an index that is
                # out of range fails where it is used; name it (and what is allowed)
                explain_bad_indices(y, x.shape[1], self.ignore_index, cause=err)
                raise
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

    #: Why this strategy cannot train on several processes (its state does not reduce across
    #: ranks yet), or None when it can. ``adaptls.train`` refuses such a run before it starts.
    #: A strategy where it depends on its options overrides this with a property.
    distributed_unsupported: str | None = None

    # ------------------------------------------------------------------ vocabulary scale
    #: Why this strategy's loss cannot be computed from the classifier layer's inputs
    #: without the logits (:meth:`linear_loss`), or None when it can. None is right for a
    #: strategy whose :meth:`smoothing` reads only the logits' shape, dtype and device
    #: (never their values) and whose :meth:`loss` is the default soft-target
    #: cross-entropy; a strategy that reads logit values overrides :meth:`linear_flat_loss`
    #: with statistics the chunked kernel provides, or keeps a reason here. The default is
    #: a reason, so that a new strategy is never silently fed logits it did not get.
    linear_unsupported: ClassVar[str | None] = (
        "its smoothing or its loss reads the logits' values, which the fused linear path "
        "never holds"
    )

    def linear_loss(
        self,
        hidden: Tensor,
        weight: Tensor,
        targets: Tensor,
        *,
        bias: Tensor | None = None,
        indices: Tensor | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        """The loss of the logits ``F.linear(hidden, weight, bias)`` without materialising
        them: equal to ``self(F.linear(hidden, weight, bias), targets, reduction,
        indices=indices)``, schedule factor, recorded epsilon and ``ignore_index`` included.

        ``hidden`` (..., D), ``weight`` (V, D) with V = ``num_classes``, ``bias`` (V,) or
        None, ``targets`` and ``indices`` (...). Runs
        :func:`~adaptls.smoothing.linear_soft_target_cross_entropy`'s chunked kernel (rows
        in chunks, never N x V). Raises ``TypeError`` naming the strategy when it cannot
        run this way (:attr:`linear_unsupported`).
        """
        check_reduction(reduction)
        self.require_linear_path()
        h, w, b, y = flatten_linear_inputs(hidden, weight, bias, targets, self.ignore_index)
        num_classes = self.require_num_classes()
        if w.shape[0] != num_classes:
            raise ValueError(
                f"weight has {w.shape[0]} rows (classes) but the strategy was set up "
                f"with num_classes={num_classes}"
            )
        with explained_indices(y, num_classes, self.ignore_index):
            loss = self.linear_flat_loss(h, w, b, y, indices, reduction)
        return loss.view(targets.shape) if reduction == "none" else loss

    def linear_flat_loss(
        self,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        indices: Tensor | None,
        reduction: str,
    ) -> Tensor:
        """:meth:`linear_loss` of checked, flattened (N, D) hidden and (N,) targets.

        Default: :meth:`smoothing` sees a stand-in for the (N, V) logits that has their
        shape, dtype and device but a single stored element (a stride-0 view), so it
        must not read values (see :attr:`linear_unsupported`).
        """
        stand_in = hidden.new_zeros(()).expand(hidden.shape[0], weight.shape[0])
        target = self._checked_target(stand_in, targets, indices)
        return fused_linear_soft_target_cross_entropy(
            hidden,
            weight,
            bias,
            targets,
            target.epsilon,
            target.prior,
            target.prior_index,
            self.ignore_index,
            reduction,
        )

    def require_linear_path(self) -> None:
        """Raise a clear ``TypeError`` if :meth:`linear_loss` cannot serve this strategy."""
        if self.linear_unsupported is not None:
            raise TypeError(
                f"{type(self).__name__} ({self.name!r}) cannot run through the fused linear "
                f"path (linear_loss): {self.linear_unsupported}. Compute the logits and call "
                "the strategy on them instead."
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

    # ------------------------------------------------------------------ mixed batches
    def mixed_loss(
        self,
        logits: Tensor,
        targets_a: Tensor,
        targets_b: Tensor,
        lam: float,
        reduction: str = "mean",
        *,
        indices_a: Tensor | None = None,
        indices_b: Tensor | None = None,
    ) -> Tensor:
        """The loss of a mixed batch (mixup, cutmix): ``lam * loss(y_a) + (1 - lam) * loss(y_b)``.

        Row i is the mix ``lam * x_a + (1 - lam) * x_b`` of two samples with labels
        ``targets_a[i]`` and ``targets_b[i]`` (sample indices ``indices_a``/``indices_b``).
        For a soft-target cross-entropy this is *exactly* the cross-entropy against the
        mixed target ``lam * t(y_a) + (1 - lam) * t(y_b)``, t this strategy's own soft
        target: the loss is linear in the target. So smoothing is applied once (never to
        an already mixed label), and the loss is two fused passes over the logits, never
        a dense N x K target. For losses that are not a soft-target CE (focal, MbLS, ...)
        the same convex combination *defines* the mixed loss (the mixup paper's
        ``mixup_criterion``): label-free penalty terms (MbLS, ACLS) count once in total,
        label-dependent ones (focal weights, MDCA's class frequencies) are those of each
        constituent, weighted by lam.

        ``lam`` is a Python number in [0, 1]; lam = 1 is the unmixed loss of ``targets_a``
        (one pass). The applied-epsilon record counts each row once, its epsilon being the
        lam-weighted mean of the two (:meth:`smoothing_amount`).
        """
        lam = check_probability("lam", lam)
        if lam == 1.0:
            return self(logits, targets_a, reduction, indices=indices_a)
        if lam == 0.0:
            return self(logits, targets_b, reduction, indices=indices_b)
        with record_weight(self, lam):
            loss_a = self(logits, targets_a, reduction, indices=indices_a)
        with record_weight(self, 1.0 - lam):
            loss_b = self(logits, targets_b, reduction, indices=indices_b)
        return lam * loss_a + (1.0 - lam) * loss_b

    # ------------------------------------------------------------------ hooks
    #: Whether the strategy itself needs the run's length (e.g. a ramp over the epochs).
    needs_run_length: ClassVar[bool] = False

    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Called at the start of each training epoch (0-based) of a ``max_epochs`` run.

        Raises ``ValueError`` when the strategy or its schedule needs the run's length and
        ``max_epochs`` is unknown (None or <= 0), instead of silently treating the run as
        one epoch long.
        """
        self.check_run_length(max_epochs)
        self.epoch, self.max_epochs = int(epoch), max_epochs

    def check_run_length(self, max_epochs: int | None) -> None:
        """Fail clearly if the run's length is needed and unknown."""
        if (self.needs_run_length or self.schedule.needs_length) and not (
            max_epochs is not None and max_epochs > 0
        ):
            what = (
                f"{type(self).__name__}"
                if self.needs_run_length
                else f"schedule {self.schedule.describe()!r}"
            )
            raise ValueError(
                f"{what} needs the run's length in epochs, got max_epochs={max_epochs!r}: "
                "set trainer.max_epochs to a number >= 1"
            )

    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        """Called after each training step with that step's (detached) logits, targets and
        sample indices (None when the data has none)."""

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        """End a training epoch: reduce, update, reset. Call it once per epoch on every rank.

        Reduces every declared per-epoch state across ranks (a collective: every rank must
        call this at the same point of its program), then :meth:`update_state`, then resets
        the per-epoch states to their defaults.
        """
        self.reduce_states(*(n for n, spec in self._states.items() if spec.reduce is not None))
        self._close_applied_epoch()
        self.update_state()
        self.reset_states(per_epoch=True)

    def update_state(self) -> None:
        """Derive the strategy's parameters from this epoch's statistics (already reduced
        across ranks). Called by :meth:`on_epoch_end`; stateful strategies override it."""

    def observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        """Called after each validation step *of fit* with its (detached) logits and
        targets; strategies steered by their own validation statistics (CALS, AdaFocal)
        collect them here and reduce them in :meth:`on_validation_end`."""

    def on_validation_end(self, validation: ValidationPass) -> None:
        """Called after each validation pass *of fit* (never for evaluation) with its
        synced figures, per class included (see :class:`ValidationPass`)."""

    def log_values(self) -> dict[str, float | Tensor]:
        """Figures to log, keyed ``smoothing/<name>`` (floats or 0-d tensors). An epsilon
        logged here is the one applied: the schedule's factor included."""
        return {}

    def figures(self) -> dict[str, FigureSpec | Any]:
        """Pictures of the strategy's state for the end of a run, keyed ``smoothing/<name>``:
        :class:`~adaptls.smoothing.figures.PerClassBars`,
        :class:`~adaptls.smoothing.figures.MatrixHeatmap`, or a matplotlib ``Figure``.
        Separate from :meth:`summary` (the ``metrics.json`` record)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description for ``metrics.json``: name, hyperparameters, figures,
        and the smoothing amount applied over training (:meth:`smoothing_amount`)."""
        values = {k: _number(v) for k, v in self.log_values().items()}
        summary = {"name": self.name, "hparams": self.hparams(), **values}
        summary["smoothing/applied_epsilon"] = self.smoothing_amount()
        if self.schedule.name != "constant":
            summary["schedule"] = self.schedule.describe()
            summary["smoothing/schedule_factor"] = self.schedule_factor
        return summary

    @property
    def schedule_factor(self) -> float:
        """s(epoch) of the epsilon schedule for the current epoch."""
        return self.schedule.factor(self.epoch, self.max_epochs)

    def hparams(self) -> dict[str, Any]:
        """The constructor's hyperparameters (what a config sets), as the strategy holds them.

        Read from the constructor: every named parameter of ``__init__`` along the class
        hierarchy (``ignore_index`` and ``schedule``, the options every strategy takes,
        aside), valued by the attribute of the same name, i.e. after the constructor's
        checks (``epsilon=0`` is recorded as 0.0). A strategy stores each hyperparameter
        under its own name, or overrides this method.
        """
        hparams = {}
        for name in constructor_hyperparameters(type(self)):
            if not hasattr(self, name):
                raise AttributeError(
                    f"{type(self).__name__} takes the hyperparameter {name!r} but keeps no "
                    f"attribute self.{name}: store it under that name, or override hparams()"
                )
            hparams[name] = getattr(self, name)
        return hparams

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
        indices = _flat_indices(indices, y)
        target = self.smoothing(x, y, indices)
        epsilon = target.epsilon
        # every training step comes here: the common case (a valid float, no prior, the
        # constant schedule) skips the general checks, a few us of the smallest shapes' time
        if not (
            type(epsilon) is float
            and 0.0 <= epsilon <= 1.0
            and target.prior is None
            and target.prior_index is None
        ):
            prior, prior_index = check_soft_target(
                epsilon, target.prior, target.prior_index, y.shape, x.shape[1]
            )
            target = SoftTarget(epsilon, prior, prior_index)
        if self.schedule.name != "constant":
            # the schedule scales the strategy's epsilon, whatever its shape
            factor = self.schedule_factor
            if factor != 1.0:
                epsilon = epsilon * factor
                target = SoftTarget(epsilon, target.prior, target.prior_index)
        if self.training and torch.is_grad_enabled():
            self._record_applied(epsilon, y)
        return target


def _flat_indices(indices: Tensor | None, y: Tensor) -> Tensor | None:
    """The sample indices flattened like the targets ``y`` (N,), or None; one per target."""
    if indices is None:
        return None
    flat = indices.reshape(-1)
    if flat.numel() != y.numel():
        raise ValueError(
            f"indices must hold one sample index per target ({y.numel()}), got {flat.numel()}"
        )
    return flat


# Constructor options every strategy takes: not hyperparameters of one strategy.
COMMON_OPTIONS = frozenset(inspect.signature(SmoothingStrategy.__init__).parameters) - {"self"}


def constructor_hyperparameters(cls: type[SmoothingStrategy]) -> list[str]:
    """Names of ``cls``'s hyperparameters: the named parameters of every ``__init__`` from
    ``cls`` up to :class:`SmoothingStrategy` (a subclass forwards ``**kwargs`` to its
    parent's), in that order, without :data:`COMMON_OPTIONS`."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is SmoothingStrategy or not issubclass(klass, SmoothingStrategy):
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            named = parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if named and parameter.name not in COMMON_OPTIONS and parameter.name not in names:
                names.append(parameter.name)
    return names


def _number(value: float | Tensor) -> float | None:
    """A JSON-friendly number: None where not finite (NaN is not JSON)."""
    number = float(value.item()) if isinstance(value, Tensor) else float(value)
    return number if math.isfinite(number) else None


def check_epsilon(name: str, value: float) -> float:
    """Validate a smoothing amount: a number in [0, 1) (1 would erase the label)."""
    return check_probability(name, value, include_one=False)
