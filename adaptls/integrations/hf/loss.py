"""The Hugging Face Trainer's ``compute_loss_func`` for any adaptls strategy.

``Trainer(compute_loss_func=smoothing_loss("uniform", epsilon=0.1))`` trains with the
strategy's loss instead of the model's own cross-entropy (or the Trainer's
``label_smoothing_factor``). Conventions, as the Trainer's own causal-LM loss:

- causal LMs (``causal=True``): position t predicts the label at t + 1. The labels are
  shifted (``labels[..., 1:]``, the last position ignored), never the logits, so no copy
  of the (B, T, V) logits is made. Seq2seq models (``causal=False``) align logits and
  labels already (the decoder reads right-shifted labels);
- labels equal to the strategy's ``ignore_index`` (``-100``, the Trainer's padding
  label) count nowhere;
- reduction: the *sum* of the rows' losses divided by ``num_items_in_batch`` when the
  Trainer passes it (the non-ignored labels of the whole accumulated batch, over every
  process), so k accumulated micro-batches give the gradient of one batch k times larger.
  Without it (a direct call), the mean over this batch's non-ignored rows.

The eps convention is the strategy's: ``UniformSmoothing(epsilon)`` spreads eps/V over
all V classes, the true one included, as ``label_smoothing_factor`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptls.metrics import CalibrationSuite
from adaptls.smoothing import STRATEGIES, Strategy
from adaptls.smoothing.driver import StrategyDriver


def build_strategy(strategy: Strategy | str, **hparams: Any) -> Strategy:
    """``strategy`` itself, or the registered strategy of that name built from ``hparams``."""
    if isinstance(strategy, Strategy):
        if hparams:
            raise TypeError(
                f"hyperparameters {sorted(hparams)} go with a strategy's name, not with an "
                f"instance ({type(strategy).__name__} is built already)"
            )
        return strategy
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be a Strategy or one of {', '.join(sorted(STRATEGIES))}; "
            f"got {strategy!r}"
        )
    return STRATEGIES[strategy](**hparams)


class SmoothingLoss:
    """A strategy's loss as the Trainer's ``compute_loss_func`` (see the module docstring).

    Called by the Trainer as ``loss(outputs, labels, num_items_in_batch=...)``. In a
    training step (gradients enabled, the logits require them) the batch is also
    observed by the strategy (its training statistics). In an evaluation step during
    ``train`` (switched on by :class:`~adaptls.integrations.hf.SmoothingCallback`) the
    batch reaches the strategy's ``observe_validation`` and a calibration suite that
    makes the pass's :class:`~adaptls.smoothing.ValidationPass`.

    ``head``: the model's output layer (``model.get_output_embeddings()``, an
    ``nn.Linear``) to train through the fused linear path: a forward pre-hook keeps the
    head's input and lets the head compute the logits of the first position only, and
    the loss is :meth:`StrategyDriver.linear_loss` of the kept hidden states, so the
    (B, T, V) logits are never formed in training (evaluation and generation, without
    gradients, are untouched). It applies where the logits *are* ``head(hidden)``; a
    model that changes them after its head (soft-capping, a scale, Marian's
    ``final_logits_bias``) is refused on the first training step (the first position's
    logits are compared), and so is a strategy that reads logit values (the criteria:
    ``StrategyDriver.linear_unsupported``).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        causal: bool = True,
        head: nn.Module | None = None,
        num_classes: int | None = None,
        class_counts: Sequence[int] | Tensor | None = None,
    ) -> None:
        self.strategy = strategy
        self.driver = StrategyDriver(strategy)
        self.causal = bool(causal)
        self.head = head
        self.validation: CalibrationSuite | None = None  # collecting a validation pass
        self._hidden: Tensor | None = None
        self._head_checked = False
        if head is not None:
            if not isinstance(getattr(head, "weight", None), Tensor):
                raise TypeError(
                    f"head must be the model's output layer with a weight (V, D) "
                    f"(model.get_output_embeddings()), got {type(head).__name__}"
                )
            reason = self.driver.linear_unsupported
            if reason is not None:
                raise TypeError(
                    f"{type(strategy).__name__} ({strategy.name!r}) cannot train through "
                    f"the fused linear path (head=...): {reason}. Leave head out."
                )
            head.register_forward_pre_hook(self._keep_hidden)
        if num_classes is not None:
            self.setup(num_classes, class_counts)
        elif class_counts is not None:
            raise ValueError("class_counts needs num_classes")

    def __repr__(self) -> str:
        linear = ", head=..." if self.head is not None else ""
        return f"{type(self).__name__}({self.strategy!r}, causal={self.causal}{linear})"

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        """Give the strategy the facts about the data: V (the logits' last dimension) and,
        for strategies that need them, the training counts per class (tokens)."""
        self.driver.setup(num_classes=num_classes, class_counts=class_counts)

    @property
    def is_set_up(self) -> bool:
        return self.strategy.num_classes is not None

    # ------------------------------------------------------------------ the loss
    def __call__(
        self, outputs: Any, labels: Tensor, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        if labels is None:
            raise ValueError(
                "smoothing_loss needs the batch's labels: the Trainer passes none when the "
                "batch has no 'labels' key (set label_names or name the column 'labels')"
            )
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        targets = self._targets(labels)
        hidden, self._hidden = self._hidden, None
        if not self.is_set_up:
            self.setup(logits.shape[-1] if hidden is None else self.head.weight.shape[0])
        reduction = "mean" if num_items_in_batch is None else "sum"
        if hidden is not None:  # a training step through the fused linear path
            loss = self._linear_loss(hidden, logits, targets, reduction)
        else:
            loss = self.driver.loss(logits, targets, reduction)
            if torch.is_grad_enabled() and logits.requires_grad:
                self.driver.observe(logits.detach(), targets)
            elif self.validation is not None:
                self._observe_validation(logits.detach(), targets)
        if num_items_in_batch is not None:
            if isinstance(num_items_in_batch, Tensor):
                num_items_in_batch = num_items_in_batch.to(loss.device)
            loss = loss / num_items_in_batch
        return loss

    def _targets(self, labels: Tensor) -> Tensor:
        if not self.causal:
            return labels
        # position t predicts label t + 1; the last position predicts nothing
        return F.pad(labels[..., 1:], (0, 1), value=self.strategy.ignore_index)

    def _linear_loss(
        self, hidden: Tensor, logits: Tensor, targets: Tensor, reduction: str
    ) -> Tensor:
        weight, bias = self.head.weight, getattr(self.head, "bias", None)
        if not self._head_checked:
            self._check_head(hidden, logits, weight, bias)
        loss = self.driver.linear_loss(hidden, weight, targets, bias=bias, reduction=reduction)
        self.driver.observe_linear(
            hidden.detach(),
            weight.detach(),
            targets,
            bias=None if bias is None else bias.detach(),
        )
        return loss

    @torch.no_grad()
    def _check_head(
        self, hidden: Tensor, logits: Tensor, weight: Tensor, bias: Tensor | None
    ) -> None:
        """The model's logits must be ``head(hidden)``: compare the first position's."""
        expected = F.linear(hidden[..., :1, :], weight, bias).float()
        got = logits.float()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-3):
            raise ValueError(
                "the model's logits are not its output layer's (head=...) logits: it changes "
                "them after the head (soft-capping, a scale or a logits bias), so the fused "
                "linear path does not apply; leave head out"
            )
        self._head_checked = True

    def _keep_hidden(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Forward pre-hook of the head: in training, keep its input and let it compute the
        first position's logits only (what :meth:`_check_head` compares)."""
        if not (module.training and torch.is_grad_enabled()):
            return None
        hidden = args[0]
        self._hidden = hidden
        return (hidden[..., :1, :], *args[1:])

    # ------------------------------------------------------------------ validation
    def _observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        suite = self.validation
        if suite.device != logits.device:
            suite.to(logits.device)
        suite.update(logits, targets)
        self.driver.observe_validation(logits, targets)

    def start_validation(self, n_bins: int = 15) -> None:
        """Collect the next evaluation's batches as a validation pass (the callback's)."""
        self.validation = CalibrationSuite(
            self.strategy._require_num_classes(),
            n_bins=n_bins,
            ignore_index=self.strategy.ignore_index,
        )


def smoothing_loss(
    strategy: Strategy | str,
    *,
    causal: bool = True,
    head: nn.Module | None = None,
    num_classes: int | None = None,
    class_counts: Sequence[int] | Tensor | None = None,
    **hparams: Any,
) -> SmoothingLoss:
    """A ``compute_loss_func`` for ``transformers.Trainer`` from a strategy.

    ``strategy``: a :class:`~adaptls.smoothing.Strategy` instance, or a registered name
    (``"uniform"``, ``"confidence"``, ...) built with ``**hparams``. ``causal``: shift the
    labels (decoder-only LMs; False for seq2seq and classification). ``head``: the model's
    output layer for the fused linear path (:class:`SmoothingLoss`). ``num_classes``
    (V) and ``class_counts`` (training tokens per class, for strategies that need them):
    the strategy's setup; without them V is read from the model (by
    :class:`~adaptls.integrations.hf.SmoothingCallback`) or from the first logits.
    """
    return SmoothingLoss(
        build_strategy(strategy, **hparams),
        causal=causal,
        head=head,
        num_classes=num_classes,
        class_counts=class_counts,
    )
