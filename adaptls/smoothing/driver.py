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

from adaptls.losses._fused_linear import chunk_rows
from adaptls.losses.checks import flatten_linear_inputs
from adaptls.smoothing.base import SmoothingStrategy, _flat_indices
from adaptls.smoothing.validation_pass import ValidationPass


class StrategyDriver:
    """Drives ``strategy`` (and every strategy inside it) from a training loop.

    Not an ``nn.Module``: the strategy is the module (its state is checkpointed with it);
    the driver holds no state of its own.
    """

    def __init__(self, strategy: SmoothingStrategy) -> None:
        if not isinstance(strategy, SmoothingStrategy):
            raise TypeError(f"strategy must be a SmoothingStrategy, got {type(strategy).__name__}")
        self.strategy = strategy
        #: The strategy tree, parent first (built at construction, as its children are).
        self.parts: tuple[SmoothingStrategy, ...] = tuple(
            m for m in strategy.modules() if isinstance(m, SmoothingStrategy)
        )
        self._observers = tuple(
            p for p in self.parts if type(p).observe is not SmoothingStrategy.observe
        )

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
        return self.strategy.linear_unsupported

    def loss(
        self,
        logits: Tensor,
        targets: Tensor,
        reduction: str = "mean",
        *,
        indices: Tensor | None = None,
    ) -> Tensor:
        """The strategy's loss of ``logits`` (..., K) against ``targets`` (...)."""
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
        """The loss of a mixed batch (mixup, cutmix); see
        :meth:`SmoothingStrategy.mixed_loss`."""
        return self.strategy.mixed_loss(
            logits, targets_a, targets_b, lam, reduction, indices_a=indices_a, indices_b=indices_b
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
        """The loss of ``F.linear(hidden, weight, bias)`` without the logits; see
        :meth:`SmoothingStrategy.linear_loss`."""
        return self.strategy.linear_loss(
            hidden, weight, targets, bias=bias, indices=indices, reduction=reduction
        )

    # ------------------------------------------------------------------ training batches
    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Start training epoch ``epoch`` (0-based) of a ``max_epochs`` run: drives every
        schedule of the tree. Raises ``ValueError`` (before any strategy changes) when one
        needs the run's length and ``max_epochs`` is unknown."""
        for part in self.parts:
            part.check_run_length(max_epochs)
        for part in self.parts:
            part.set_epoch(epoch, max_epochs)

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        """After each training step: the step's (detached) logits, targets and sample
        indices reach every strategy of the tree."""
        for part in self.parts:
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
        idx = _flat_indices(indices, y)
        n = y.numel()
        step = chunk_rows(n, w.shape[0], h.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            logits = torch.nn.functional.linear(h[s:e], w, b)
            for part in self._observers:
                part.observe(logits, y[s:e], None if idx is None else idx[s:e])

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        """End a training epoch on every strategy of the tree: reduce the per-epoch states
        across ranks, update, reset. A collective: call it once per epoch on every rank,
        at the same point of the program."""
        for part in self.parts:
            part.on_epoch_end()

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
