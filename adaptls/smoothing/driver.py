"""What a training loop calls on a strategy: its losses, observation, epochs and validation.

A strategy is what an author writes (:mod:`adaptls.smoothing.base`); the
:class:`StrategyDriver` is what a loop holds. The Lightning module
(:class:`~adaptls.module.SmoothingClassifier`) drives its strategy through one, and so can
any plain PyTorch loop::

    driver = StrategyDriver(strategy)
    driver.setup(num_classes=10, class_counts=counts)
    for epoch in range(epochs):
        driver.set_epoch(epoch, epochs)
        for x, y in batches:
            logits = net(x)
            loss = driver.loss(logits, y)
            loss.backward()
            driver.observe(logits.detach(), y)
        driver.on_epoch_end()
        ...  # validation: driver.observe_validation(logits, y) per batch, then
        driver.on_validation_end(ValidationPass(...))

Composition by construction: every hook the driver calls reaches every strategy of the
*strategy tree*, the strategy and each strategy module inside it (a wrapper's base, e.g.
``MDCA(base="adafocal")``), parent first in ``nn.Module.modules()`` order. That order is
the same on every rank, so the collectives of ``on_epoch_end`` and of a strategy's
``on_validation_end`` pair up. No wrapper forwards a hook by hand. The losses are the
root's: a wrapper composes its base's loss itself (MDCA adds its term to the base's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from adaptls.checks import check_probability
from adaptls.losses._fused_linear import chunk_rows
from adaptls.losses.checks import check_reduction, explained_indices, flatten_linear_inputs
from adaptls.smoothing._applied import AppliedEpsilonRecord, record_weight
from adaptls.smoothing.base import SmoothingStrategy, Strategy, check_run_length, flat_indices
from adaptls.smoothing.validation_pass import ValidationPass


class StrategyDriver:
    """Drives ``strategy`` (and every strategy inside it) from a training loop.

    ``strategy``: a :class:`~adaptls.smoothing.base.SmoothingStrategy` or a
    :class:`~adaptls.smoothing.base.Criterion`. Not an ``nn.Module``: the strategy is the
    module (its state is checkpointed with it); the driver holds no state of its own, so
    drivers of one strategy are interchangeable.
    """

    def __init__(self, strategy: Strategy) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(
                "strategy must be a SmoothingStrategy or a Criterion, got "
                f"{type(strategy).__name__}"
            )
        self.strategy = strategy
        #: The strategy tree, parent first (read at construction: a strategy's parts are
        #: built by its constructor).
        self.parts: tuple[Strategy, ...] = tuple(
            m for m in strategy.modules() if isinstance(m, Strategy)
        )
        # The parts that observe training batches (the others' observe is the no-op): every
        # step visits only these, in tree order.
        self._observers = tuple(p for p in self.parts if type(p).observe is not Strategy.observe)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r})"

    # ------------------------------------------------------------------ data facts
    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        """Give every strategy of the tree the facts about the data (once, before any loss)."""
        for part in self.parts:
            part.setup(num_classes, class_counts)

    # ------------------------------------------------------------------ losses
    @property
    def linear_unsupported(self) -> str | None:
        """Why :meth:`linear_loss` cannot serve this strategy, or None when it can."""
        return self.strategy.limits.linear

    @property
    def distributed_unsupported(self) -> str | None:
        """Why a strategy of the tree cannot train on several processes, or None."""
        return next((p.limits.distributed for p in self.parts if p.limits.distributed), None)

    def loss(
        self,
        logits: Tensor,
        targets: Tensor,
        reduction: str = "mean",
        *,
        indices: Tensor | None = None,
    ) -> Tensor:
        """The strategy's loss of ``logits`` (..., K) against ``targets`` (...): the same as
        calling the strategy."""
        return self.strategy(logits, targets, reduction, indices=indices)

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
        mixed target ``lam * t(y_a) + (1 - lam) * t(y_b)``, t the strategy's own soft
        target: the loss is linear in the target. So smoothing is applied once (never to
        an already mixed label), and the loss is two fused passes over the logits, never
        a dense N x K target. For a criterion (focal, MbLS, ...) the same convex
        combination *defines* the mixed loss (the mixup paper's ``mixup_criterion``):
        label-free penalty terms (MbLS, ACLS) count once in total, label-dependent ones
        (focal weights, MDCA's class frequencies) are those of each constituent, weighted
        by lam.

        ``lam`` is a Python number in [0, 1]; lam = 1 is the unmixed loss of ``targets_a``
        (one pass). The applied-epsilon record counts each row once, its epsilon being the
        lam-weighted mean of the two (:meth:`smoothing_amount`).
        """
        lam = check_probability("lam", lam)
        strategy = self.strategy
        if lam == 1.0:
            return strategy(logits, targets_a, reduction, indices=indices_a)
        if lam == 0.0:
            return strategy(logits, targets_b, reduction, indices=indices_b)
        with record_weight(strategy, lam):
            loss_a = strategy(logits, targets_a, reduction, indices=indices_a)
        with record_weight(strategy, 1.0 - lam):
            loss_b = strategy(logits, targets_b, reduction, indices=indices_b)
        return lam * loss_a + (1.0 - lam) * loss_b

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
        them: equal to ``strategy(F.linear(hidden, weight, bias), targets, reduction,
        indices=indices)``, schedule factor, recorded epsilon and ``ignore_index`` included.

        ``hidden`` (..., D), ``weight`` (V, D) with V = ``num_classes``, ``bias`` (V,) or
        None, ``targets`` and ``indices`` (...). Runs
        :func:`~adaptls.losses.linear_soft_target_cross_entropy`'s chunked kernel (rows
        in chunks, never N x V). Raises ``TypeError`` naming the strategy when it cannot
        run this way (:attr:`linear_unsupported`).
        """
        check_reduction(reduction)
        strategy = self.strategy
        if strategy.limits.linear is not None or not isinstance(strategy, SmoothingStrategy):
            raise TypeError(
                f"{type(strategy).__name__} ({strategy.name!r}) cannot run through the fused "
                f"linear path (linear_loss): {strategy.limits.linear}. Compute the "
                "logits and call the strategy on them instead."
            )
        ignore_index = strategy.ignore_index
        h, w, b, y = flatten_linear_inputs(hidden, weight, bias, targets, ignore_index)
        num_classes = strategy._require_num_classes()
        if w.shape[0] != num_classes:
            raise ValueError(
                f"weight has {w.shape[0]} rows (classes) but the strategy was set up "
                f"with num_classes={num_classes}"
            )
        with explained_indices(y, num_classes, ignore_index):
            loss = strategy._linear_flat_loss(h, w, b, y, indices, reduction)
        return loss.view(targets.shape) if reduction == "none" else loss

    # ------------------------------------------------------------------ training batches
    def check_run_length(self, max_epochs: int | None) -> None:
        """Raise ``ValueError`` naming the part when a strategy of the tree (or its
        schedule) needs the run's length in epochs and ``max_epochs`` is unknown (None or
        <= 0), instead of silently treating the run as one epoch long."""
        for part in self.parts:
            check_run_length(part, max_epochs)

    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Start training epoch ``epoch`` (0-based) of a ``max_epochs`` run: every strategy
        of the tree reads it (``epoch``, ``max_epochs``, its schedule's factor). Raises
        ``ValueError`` (before any strategy changes) as :meth:`check_run_length`."""
        self.check_run_length(max_epochs)
        for part in self.parts:
            part.epoch, part.max_epochs = int(epoch), max_epochs

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        """After each training step: the step's (detached) logits, targets and sample
        indices reach every strategy of the tree that observes."""
        for part in self._observers:
            part.observe(logits, targets, indices)

    @torch.no_grad()
    def observe_mixed(
        self,
        logits: Tensor,
        targets_a: Tensor,
        targets_b: Tensor,
        lam: float,
        indices_a: Tensor | None = None,
        indices_b: Tensor | None = None,
    ) -> None:
        """:meth:`observe` for a mixed batch: each row counts as its *dominant* constituent
        (``targets_a`` where lam >= 0.5, else ``targets_b``), with the logits of the mixed
        input.

        Why the dominant label: a mixed input is an augmented view of the sample that
        makes up most of it (lam ~ Beta(alpha, alpha) with alpha <= 1 puts most of its
        mass near 0 and 1), so statistics keyed by label or sample (online smoothing's
        class rows, self-distillation's stored predictions) keep being collected on
        every batch, also when every batch is mixed (collecting from unmixed batches only
        would then collect nothing). Online smoothing still counts a row only where the
        prediction equals that label. The price: predictions on mixed inputs are softer
        than on clean ones, so such statistics are softer too.
        """
        if lam >= 0.5:
            self.observe(logits, targets_a, indices_a)
        else:
            self.observe(logits, targets_b, indices_b)

    @torch.no_grad()
    def observe_linear(
        self,
        hidden: Tensor,
        weight: Tensor,
        targets: Tensor,
        *,
        bias: Tensor | None = None,
        indices: Tensor | None = None,
    ) -> None:
        """:meth:`observe` of ``F.linear(hidden, weight, bias)``, the logits computed chunk
        by chunk of rows (as many rows as the linear loss's chunks): memory O(rows V),
        never N x V. Exact because observed statistics are sums over rows. Nothing is
        computed when no strategy of the tree observes, or outside training."""
        if not self._observers or not self.strategy.training:
            return
        ignore_index = self.strategy.ignore_index
        h, w, b, y = flatten_linear_inputs(hidden, weight, bias, targets, ignore_index)
        idx = flat_indices(indices, y)
        n = y.numel()
        step = chunk_rows(n, w.shape[0], h.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            logits = torch.nn.functional.linear(h[s:e], w, b)
            for part in self._observers:
                part.observe(logits, y[s:e], None if idx is None else idx[s:e])

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        """End a training epoch on every strategy of the tree, parent first: reduce its
        per-epoch states across ranks (declared with a ``reduce`` op), add the epoch's
        applied epsilon to the run's record, ``update_state()``, reset the per-epoch
        states to their defaults.

        A collective: call it once per epoch on every rank, at the same point of the
        program.
        """
        for part in self.parts:
            part._reduce_states(*(n for n, spec in part._states.items() if spec.reduce))
            if isinstance(part, AppliedEpsilonRecord):
                part._close_applied_epoch()
            part.update_state()
            part._reset_states(per_epoch=True)

    # ------------------------------------------------------------------ validation of fit
    @torch.no_grad()
    def observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        """After each validation step *of fit* (never of evaluation): its (detached)
        logits and targets reach every strategy of the tree."""
        for part in self.parts:
            part.observe_validation(logits, targets)

    @torch.no_grad()
    def on_validation_end(self, validation: ValidationPass) -> None:
        """After each validation pass *of fit*, on every rank (a strategy may reduce its
        validation statistics here): every strategy of the tree, parent first."""
        for part in self.parts:
            part.on_validation_end(validation)

    # ------------------------------------------------------------------ reporting
    def log_values(self) -> dict[str, float | Tensor]:
        """The strategy's figures to log (``smoothing/<name>``: floats or 0-d tensors)."""
        return self.strategy.log_values()

    def smoothing_amount(self) -> float | None:
        """Mean epsilon applied to the training rows of completed epochs, schedule factor
        included (for per-row priors, the weight on the prior); None before any epoch, and
        for a criterion (the comparison's x axis)."""
        return self.strategy._smoothing_amount()
