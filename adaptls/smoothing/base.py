"""The two small contracts a strategy author writes against.

- :class:`SmoothingStrategy`: a *soft-target strategy*. It decides, for each row, the
  soft target ``t_i = (1 - eps_i) * onehot(y_i) + eps_i * u_i`` (:meth:`~SmoothingStrategy.
  smoothing`); the loss is always the fused soft-target cross-entropy.
- :class:`Criterion`: a loss that is *not* a soft-target cross-entropy (focal family,
  MbLS, CALS, ACLS, AdaFocal, dual focal, MDCA): it implements :meth:`Criterion.loss`
  and has no soft target.

Both are :class:`Strategy` modules (the shared part: a registered ``name``, options,
facts about the data, declared state and its hooks, figures), built from hyperparameters
only and usable from any plain PyTorch loop: ``loss = s(logits, targets)``. What a
training loop calls beyond that (mixed and fused-linear losses, observation of each kind
of batch, schedules, epochs, validation passes, the applied-epsilon record) is the
:class:`~adaptls.smoothing.driver.StrategyDriver`'s, not the author's.
"""

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
from adaptls.losses._fused import _compute_dtype, fused_soft_target_cross_entropy
from adaptls.losses._fused_linear import fused_linear_soft_target_cross_entropy
from adaptls.losses.checks import (
    check_inputs,
    check_reduction,
    check_soft_target,
    explain_bad_indices,
)
from adaptls.losses.soft_target import dense_soft_targets
from adaptls.smoothing._applied import RECORD_STATES, AppliedEpsilonRecord
from adaptls.smoothing._declared_state import DeclaredState, StateSpec
from adaptls.smoothing._registry import REGISTRY, register_strategy
from adaptls.smoothing.figures import FigureSpec
from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.smoothing.validation_pass import ValidationPass

# Argument checks a strategy's constructor uses (adaptls.checks; re-exported here for authors).
__all__ = [
    "REGISTRY",
    "Criterion",
    "Limits",
    "SmoothingStrategy",
    "SoftTarget",
    "StateSpec",
    "Strategy",
    "check_choice",
    "check_epsilon",
    "check_nonnegative",
    "check_positive",
    "soft_targets",
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


class Limits(NamedTuple):
    """What a strategy cannot do, declared once and read before a run starts.

    - ``linear``: why its loss cannot be computed from the classifier layer's inputs
      without the logits (the driver's ``linear_loss``), or None when it can. The default
      is a reason, so that a new strategy is never silently fed logits it did not get;
    - ``distributed``: why it cannot train on several processes (its state does not
      reduce across ranks yet), or None when it can: ``adaptls.train`` refuses such a run
      before it starts;
    - ``needs_run_length``: whether it needs the run's length in epochs (a ramp over the
      run): a run of unknown length is refused.
    """

    linear: str | None = (
        "its smoothing or its loss reads the logits' values, which the fused linear path "
        "never holds"
    )
    distributed: str | None = None
    needs_run_length: bool = False


class Strategy(DeclaredState):
    """What both kinds share (subclass :class:`SmoothingStrategy` or :class:`Criterion`).

    A strategy is built from hyperparameters only (what a Hydra yaml holds); facts about
    the data (``num_classes``, ``class_counts``) arrive through :meth:`setup`. Calling it,
    ``s(logits, targets)``, is its loss of (..., K) logits against (...) targets.

    What an author may write, all optional except the loss (each kind says which):

    - :meth:`setup` (call ``super().setup(...)``), where state is declared with
      :meth:`add_state` (a default value, and ``reduce="sum"``/``"max"``/``"min"`` for
      per-rank statistics of an epoch): declared states are checkpointed (through
      ``get_extra_state``), follow the module's device (never its dtype), are kept out
      of DDP's buffer broadcast, and are identical on every rank after each epoch;
    - :meth:`observe` (each training step's detached logits), :meth:`update_state` (at
      each epoch's end, after the per-epoch states are reduced across ranks; they are
      reset after it), :meth:`observe_validation` and :meth:`on_validation_end` (the
      validation passes of fit only: evaluation never moves a strategy);
    - :meth:`log_values` (figures logged during training), :meth:`figures` (pictures for
      the run's ``plots/``), :meth:`summary` (the ``metrics.json`` record) and
      :meth:`hparams` (read from the constructor);
    - declarations: ``name`` (registers the class: ``smoothing=<name>``),
      ``search_space`` (the default of ``hparams_search``) and ``limits`` (what it
      cannot do: :class:`Limits`).

    What it reads: ``num_classes``/``class_counts`` (after setup), ``epoch``/``max_epochs``
    (the current training epoch) and :attr:`schedule_factor`, ``ignore_index``.

    Options every strategy takes (keyword-only, forwarded by subclasses' ``**kwargs``):

    - ``ignore_index``: targets with this value contribute nothing (default -100);
    - ``schedule``: an :class:`~adaptls.smoothing.schedule.EpsilonSchedule` (or its name,
      or a mapping), a factor s(epoch) in [0, 1] applied to whatever epsilon a
      soft-target strategy decides (a criterion applies it to its own strength), so every
      schedule composes with every strategy (default: constant).

    Sample indices: calls and :meth:`observe` accept the batch's sample indices
    (positions in the training set, flattened like the targets); strategies that keep
    per-sample state (self-distillation) use them, others ignore them.
    """

    name: ClassVar[str] = "base"
    #: Default search space of ``hparams_search`` when no
    #: ``conf/search_space/<search>/<name>.yaml`` exists: hyperparameter -> an expression of
    #: the Optuna sweeper (``"interval(0.0, 0.4)"``, ``"tag(log, interval(0.1, 10))"``,
    #: ``"choice(1, 5)"``). Empty: such a search stops with an error naming both ways.
    search_space: ClassVar[Mapping[str, str]] = {}
    #: What this strategy cannot do, read before a run starts (:class:`Limits`). A strategy
    #: where it depends on its options overrides this with a property.
    limits: Limits = Limits()

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
        """Receive the facts about the data: number of classes, training counts per class.

        A composed strategy's parts each receive them from the driver
        (``StrategyDriver(strategy).setup(...)``).
        """
        k = check_num_classes(num_classes)
        counts = None if class_counts is None else check_class_counts(class_counts, k)
        self.num_classes, self.class_counts = k, counts

    def _require_num_classes(self) -> int:
        if self.num_classes is None:
            raise RuntimeError(
                f"{type(self).__name__} needs num_classes: call setup(num_classes=...) first "
                "(StrategyDriver(strategy).setup(...) sets up every part of a composed one)"
            )
        return self.num_classes

    # ------------------------------------------------------------------ the loss
    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        reduction: str = "mean",
        *,
        indices: Tensor | None = None,
    ) -> Tensor:
        """The loss of ``logits`` (..., K) against ``targets`` (...).

        ``indices`` (...): the samples' positions in the training set, if known.
        ``reduction``: ``"mean"`` over rows whose target is not ``ignore_index`` (0 when
        none is counted), ``"sum"``, or ``"none"`` (shaped like ``targets``, 0 on ignored
        rows). For a soft-target strategy this is the fused soft-target cross-entropy
        (:func:`~adaptls.losses.soft_target_cross_entropy`).
        """
        check_reduction(reduction)
        x, y = self._flatten_checked(logits, targets)
        if torch.compiler.is_compiling():
            loss = self._flat_loss(x, y, indices, reduction)
        else:
            try:
                loss = self._flat_loss(x, y, indices, reduction)
            except (RuntimeError, IndexError) as err:
                # target values are not checked up front (a host sync): an index that is
                # out of range fails where it is used; name it (and what is allowed)
                if y.device.type != "meta":
                    explain_bad_indices(y, x.shape[1], self.ignore_index, cause=err)
                raise
        return loss.view(targets.shape) if reduction == "none" else loss

    def _flat_loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        """The loss of checked (N, K) logits and (N,) targets (each kind defines it; a
        wrapper computes its base's loss through it)."""
        raise NotImplementedError

    def _flatten_checked(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(N, K) logits and (N,) int64 targets, after checking them against the setup."""
        num_classes = self._require_num_classes()
        x, y = check_inputs(logits, targets, self.ignore_index)
        if x.shape[1] != num_classes:
            raise ValueError(
                f"logits have {x.shape[1]} classes but the strategy was set up "
                f"with num_classes={num_classes}"
            )
        return x, y

    # ------------------------------------------------------------------ state hooks
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        """Called after each training step with that step's (detached) logits, targets and
        sample indices (None when the data has none)."""

    def update_state(self) -> None:
        """Derive the strategy's parameters from this epoch's statistics (already reduced
        across ranks). Called at the end of every training epoch, on every rank."""

    def observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        """Called after each validation step *of fit* with its (detached) logits and
        targets; strategies steered by their own validation statistics (CALS, AdaFocal)
        collect them here and reduce them in :meth:`on_validation_end`."""

    def on_validation_end(self, validation: ValidationPass) -> None:
        """Called after each validation pass *of fit* (never for evaluation) with its
        synced figures, per class included (see :class:`ValidationPass`), on every rank
        (so a strategy may reduce its validation statistics across ranks here)."""

    # ------------------------------------------------------------------ what it reports
    @property
    def schedule_factor(self) -> float:
        """s(epoch) of the epsilon schedule for the current epoch."""
        return self.schedule.factor(self.epoch, self.max_epochs)

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
        and the smoothing amount applied over training (None for a criterion)."""
        values = {k: _number(v) for k, v in self.log_values().items()}
        summary = {"name": self.name, "hparams": self.hparams(), **values}
        summary["smoothing/applied_epsilon"] = self._smoothing_amount()
        if self.schedule.name != "constant":
            summary["schedule"] = self.schedule.describe()
            summary["smoothing/schedule_factor"] = self.schedule_factor
        return summary

    def _smoothing_amount(self) -> float | None:
        return None

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


class SmoothingStrategy(AppliedEpsilonRecord, Strategy):
    """A soft-target strategy: turns hard labels into soft targets, trained by
    cross-entropy.

    An author implements :meth:`smoothing` (which sees logits flattened to (N, K) and
    targets to (N,) and returns a :class:`SoftTarget`) and, if stateful, the hooks of
    :class:`Strategy`. A stateless strategy implements only :meth:`smoothing`. The loss is
    always the fused :func:`~adaptls.losses.soft_target_cross_entropy`; no strategy builds
    t itself. :func:`soft_targets` returns the dense t (for analysis and tests).

    The fused linear path (the driver's ``linear_loss``: the classifier layer's inputs
    instead of the (N, V) logits) serves a strategy that declares
    ``limits = Limits(linear=None)``: right for one whose :meth:`smoothing` reads only the logits' shape, dtype and
    device (never their values). One whose smoothing reads logit values (confidence,
    online top-k) overrides ``_linear_flat_loss`` with statistics the chunked kernel
    provides, or keeps the default reason, so that a new strategy is never silently fed
    logits it did not get.

    Every soft-target strategy records the smoothing it applied to training rows
    (epsilon after the schedule, averaged over rows): the driver's ``smoothing_amount()``
    (the record is :class:`~adaptls.smoothing._applied.AppliedEpsilonRecord`, a base of
    this class; its sums are declared states).
    """

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        """Decide epsilon and prior for (N, K) logits, (N,) targets and, when the data
        provides them, (N,) sample indices."""
        raise NotImplementedError

    def _dense_target(self, x: Tensor, y: Tensor, indices: Tensor | None) -> Tensor:
        """The dense (N, K) soft target of checked, flattened inputs (:func:`soft_targets`).
        A strategy whose target is not one :class:`SoftTarget` (online top-k) overrides
        this."""
        target = self._checked_target(x, y, indices)
        return dense_soft_targets(
            y,
            x.shape[-1],
            target.epsilon,
            target.prior,
            prior_index=target.prior_index,
            ignore_index=self.ignore_index,
            dtype=_compute_dtype(x.dtype),  # what the loss computes in: float64 stays float64
        )

    def _flat_loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        """The fused soft-target cross-entropy of :meth:`smoothing`'s target for checked,
        flattened (N, K) logits and (N,) targets. A strategy whose target is not one
        :class:`SoftTarget` (online top-k) overrides this."""
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

    def _linear_flat_loss(
        self,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        indices: Tensor | None,
        reduction: str,
    ) -> Tensor:
        """The fused-linear loss of checked, flattened (N, D) hidden and (N,) targets.

        Default: :meth:`smoothing` sees a stand-in for the (N, V) logits that has their
        shape, dtype and device but a single stored element (a stride-0 view), so it
        must not read values (see :class:`Limits`).
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

    def _checked_target(self, x: Tensor, y: Tensor, indices: Tensor | None) -> SoftTarget:
        indices = flat_indices(indices, y)
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


class Criterion(Strategy):
    """A loss that is not a soft-target cross-entropy (focal family, MbLS, CALS, ACLS,
    AdaFocal, dual focal, MDCA): an author implements :meth:`loss` and, if stateful, the
    hooks of :class:`Strategy`. It has no soft target.

    The epsilon ``schedule`` every strategy accepts scales the loss's own strength (gamma,
    alpha or beta: each criterion says which), so s(epoch) = 0 gives plain cross-entropy.
    A criterion reads logit values, so the fused linear path never serves it.

    :meth:`loss` runs on checked inputs; only if it fails on an index is the first target
    outside ``[0, K)`` named in a ValueError (read on the error path only: no host sync on
    the way to a loss; on CUDA a bad target trips the device-side assertion of
    ``F.cross_entropy``/``gather``, as in the fused loss), as for every strategy.
    """

    limits: Limits = Limits(
        linear="a criterion's loss reads the logits' values, which the fused linear path "
        "never holds"
    )

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        """The loss of checked (N, K) logits and (N,) int64 targets (``indices``: (N,) sample
        indices or None). ``reduction``: ``"mean"`` over the rows whose target is not
        ``ignore_index`` (0 when none is counted, never NaN), ``"sum"``, or ``"none"``
        ((N,), 0 on ignored rows)."""
        raise NotImplementedError

    def _flat_loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        return self.loss(x, y, indices, reduction)

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        # Checkpoints written while criteria shared the soft-target base hold its
        # applied-epsilon record, which a criterion never wrote (always zero): dropped.
        super().set_extra_state({k: v for k, v in state.items() if k not in RECORD_STATES})


def flat_indices(indices: Tensor | None, y: Tensor) -> Tensor | None:
    """The sample indices flattened like the targets ``y`` (N,), or None; one per target."""
    if indices is None:
        return None
    flat = indices.reshape(-1)
    if flat.numel() != y.numel():
        raise ValueError(
            f"indices must hold one sample index per target ({y.numel()}), got {flat.numel()}"
        )
    return flat


@torch.no_grad()
def soft_targets(
    strategy: SmoothingStrategy, logits: Tensor, targets: Tensor, indices: Tensor | None = None
) -> Tensor:
    """The dense soft target t of ``strategy``, shaped like ``logits`` (..., K), for
    analysis and tests: what the fused loss trains against, schedule factor included, in
    the dtype the loss computes in (float64 for float64 logits, else float32). Rows whose
    target is ``ignore_index`` are all zero. Materialises N x K."""
    if not isinstance(strategy, SmoothingStrategy):
        raise TypeError(
            f"{type(strategy).__name__} (smoothing={strategy.name}) has no soft target: it is "
            "a criterion, whose loss is not a cross-entropy against a target distribution"
        )
    x, y = strategy._flatten_checked(logits, targets)
    return strategy._dense_target(x, y, indices).view(logits.shape)


def check_run_length(strategy: Strategy, max_epochs: int | None) -> None:
    """Fail clearly if ``strategy`` (or its schedule) needs the run's length in epochs and
    ``max_epochs`` is unknown (None or <= 0), instead of treating the run as one epoch."""
    own = strategy.limits.needs_run_length
    if (own or strategy.schedule.needs_length) and not (max_epochs is not None and max_epochs > 0):
        what = f"{type(strategy).__name__}" if own else f"schedule {strategy.schedule.describe()!r}"
        raise ValueError(
            f"{what} needs the run's length in epochs, got max_epochs={max_epochs!r}: "
            "set trainer.max_epochs to a number >= 1"
        )


# Constructor options every strategy takes: not hyperparameters of one strategy.
COMMON_OPTIONS = frozenset(inspect.signature(Strategy.__init__).parameters) - {"self"}
_CONTRACTS = (Strategy, SmoothingStrategy, Criterion)


def constructor_hyperparameters(cls: type[Strategy]) -> list[str]:
    """Names of ``cls``'s hyperparameters: the named parameters of every ``__init__`` from
    ``cls`` up to its contract (:class:`SmoothingStrategy` or :class:`Criterion`; a
    subclass forwards ``**kwargs`` to its parent's), in that order, without
    :data:`COMMON_OPTIONS`."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass in _CONTRACTS or not issubclass(klass, Strategy):
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            named = parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if named and parameter.name not in COMMON_OPTIONS and parameter.name not in names:
                names.append(parameter.name)
    return names


def _number(value: float | Tensor | None) -> float | None:
    """A JSON-friendly number: None where not finite (NaN is not JSON)."""
    if value is None:
        return None
    number = float(value.item()) if isinstance(value, Tensor) else float(value)
    return number if math.isfinite(number) else None


def check_epsilon(name: str, value: float) -> float:
    """Validate a smoothing amount: a number in [0, 1) (1 would erase the label)."""
    return check_probability(name, value, include_one=False)
