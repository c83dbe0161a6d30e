"""SmoothingClassifier: the only place a smoothing strategy meets Lightning."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn

from adaptls.metrics import CalibrationSuite
from adaptls.metrics.nll import perplexity
from adaptls.mix import Mixed, NoMix
from adaptls.models.linear_head import has_linear_head
from adaptls.run.finite_loss import FiniteLossCheck
from adaptls.run.library_shims import logs_this_step
from adaptls.smoothing import Strategy, ValidationPass
from adaptls.smoothing.driver import StrategyDriver

log = logging.getLogger(__name__)

# The checkpoint key of the training epoch's running sums (train/loss_epoch, train/acc).
_EPOCH_SUMS = "adaptls_train_epoch_sums"

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
Mixer = Callable[[Tensor, Tensor], Mixed]


class SmoothingClassifier(pl.LightningModule):
    """A classifier trained with a pluggable label-smoothing strategy.

    The strategy is driven only through a :class:`~adaptls.smoothing.driver.StrategyDriver`
    (which reaches every strategy of its tree, a composed base included), never by type:

    - ``setup(num_classes, class_counts)`` once, here, with the datamodule's facts;
    - ``set_epoch(epoch, max_epochs)`` at the start of every training epoch;
    - ``mixed_loss(logits, y_a, y_b, lam, indices_a=, indices_b=)`` is the training loss of
      the batch as ``mix`` returns it (``indices``: the batch's positions in the training
      set, when the data yields them; unmixed, lam = 1, it is ``strategy(logits, y,
      indices=indices)``); the validation loss is ``strategy(logits, targets)``;
    - ``observe_mixed(logits, y_a, y_b, lam, indices_a, indices_b)`` after every training
      step (detached logits; unmixed, it is ``observe(logits, y, indices)``);
    - ``on_epoch_end()`` once per training epoch, *inside the epoch's last training step*,
      right after its ``observe``. It reduces the strategy's statistics across ranks, and a
      collective is only safe where every rank is sure to arrive in the same order: the
      training step is such a place (every rank runs it equally often, and no callback runs
      inside it), while epoch-end hooks are not (rank 0's progress bar syncs the epoch's
      logged metrics in its ``on_train_epoch_end``, other ranks do not; a collective there
      deadlocks). A checkpoint written at the end of the epoch holds the updated state.
      With data of unknown length the update falls back to ``on_train_epoch_end``;
    - ``observe_validation(logits, targets)`` after every validation step of fit;
    - ``on_validation_end(validation)`` after every validation epoch *of fit* (not the
      sanity check, not a later ``trainer.validate``/``trainer.test``: evaluation never
      moves a strategy), with a :class:`~adaptls.smoothing.ValidationPass` of the synced
      validation figures, per class included;
    - ``log_values()`` is logged at the training steps whose values Lightning hands to a
      logger (every ``log_every_n_steps``; never without a logger).

    Per step the training loop reads nothing back from the device: a non-finite loss is
    found once per epoch (and before any checkpoint is written) and raises
    FloatingPointError naming its first step; ``train/loss_epoch``, ``train/acc`` and
    ``val/loss`` are summed on the device and logged once per epoch (their running sums
    travel in mid-epoch checkpoints); ``train/loss_step`` is logged only at the steps a
    logger writes or the progress bar redraws (each ``self.log`` call costs Lightning about
    half a millisecond, as much as a small model's step).

    A model with a linear head (``features(x)`` and ``head``, see
    :mod:`adaptls.models.linear_head`; the language models) is trained through
    ``driver.linear_loss(hidden, head.weight, targets, bias=head.bias, indices=...)``
    and observed through ``driver.observe_linear(...)``, which never hold the N x V
    logits; ``train/acc`` is then not logged (it would need them), and batches are not
    mixed (token ids do not mix). A strategy that cannot run that way
    (``linear_unsupported``) gets the logits, with a warning. Validation and test compute
    the logits batch by batch as for any model.

    Token-level tasks (``token_level=True``, language modelling: (B, T, V) logits with
    (B, T) targets, ``-100`` where there is no target) also log ``<stage>/ppl``, the
    perplexity exp(NLL) of the unsmoothed mean NLL over the counted tokens.

    Args:
        net: maps a batch of inputs to (B, K) logits (or (B, T, K) for sequences).
        strategy: the smoothing strategy (an ``nn.Module``; its state is checkpointed).
        optimizer: builds the optimizer from the parameters (a Hydra ``_partial_``).
        scheduler: builds an epoch-wise LR scheduler from the optimizer, or ``None``.
        num_classes, class_counts: facts from the datamodule (training split counts).
        n_bins: calibration bins for the metrics.
        mix: the training batches' mixing augmentation (:mod:`adaptls.mix`; default none).
        token_level: log perplexity too (language modelling).
    """

    def __init__(
        self,
        net: nn.Module,
        strategy: Strategy,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        *,
        num_classes: int,
        class_counts: Sequence[int] | None = None,
        n_bins: int = 15,
        mix: Mixer | None = None,
        token_level: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.strategy = strategy
        self.driver = StrategyDriver(strategy)
        self.driver.setup(num_classes=num_classes, class_counts=class_counts)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.num_classes = num_classes
        self.class_counts = list(class_counts) if class_counts is not None else None
        # Not submodules: the suites hold no parameters and nothing checkpointed, and as
        # submodules each would be a row of Lightning's model summary (about 1 ms a row per
        # fit here). They follow the module's device and dtype (_apply).
        self._suites = {
            stage: CalibrationSuite(num_classes, class_counts, n_bins=n_bins)
            for stage in ("val", "test")
        }
        self.mix = mix if mix is not None else NoMix()
        self.token_level = token_level
        if has_linear_head(net) and not isinstance(self.mix, NoMix):
            raise ValueError(
                f"mix={self.mix!r} does not apply to {type(net).__name__}: its inputs are "
                "token ids, which do not mix (use mix=none)"
            )
        self.linear_head = has_linear_head(net) and self.driver.linear_unsupported is None
        if has_linear_head(net) and not self.linear_head:
            log.warning(
                "%s cannot use the fused linear loss (%s): training computes the full "
                "logits of every batch instead",
                type(strategy).__name__,
                self.driver.linear_unsupported,
            )
        self._epoch_ended = False
        self._finite_loss = FiniteLossCheck()
        self._train_correct: Tensor | None = None  # this epoch's (lam-weighted) hits
        self._train_rows = 0
        self._train_loss: Tensor | None = None  # this epoch's loss x batch size, summed
        self._train_batches = 0  # ... and the batch sizes
        self._val_loss: Tensor | None = None  # this validation's loss, summed over rows
        self._val_rows = 0

    @property
    def val_metrics(self) -> CalibrationSuite:
        """The validation figures (reset after every validation epoch)."""
        return self._suites["val"]

    @property
    def test_metrics(self) -> CalibrationSuite:
        """The test figures (reset after every test epoch)."""
        return self._suites["test"]

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> SmoothingClassifier:
        super()._apply(fn, recurse)
        if recurse:  # .to(device), .cuda(), ... reach the suites as they reach submodules
            for suite in self._suites.values():
                suite._apply(fn)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        # A run resumed mid-epoch skips that epoch's on_train_epoch_start: the strategy
        # learns its epoch here (after the checkpoint is restored), and the epoch's sums
        # restored from the checkpoint move to this module's device.
        self.driver.set_epoch(self.current_epoch, self.trainer.max_epochs)
        if self._train_correct is not None:
            self._train_correct = self._train_correct.to(self.device)
        if self._train_loss is not None:
            self._train_loss = self._train_loss.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.driver.set_epoch(self.current_epoch, self.trainer.max_epochs)
        self._epoch_ended = False
        self._finite_loss.reset()
        self._train_correct, self._train_rows = None, 0
        self._train_loss, self._train_batches = None, 0

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        indices = batch[2] if len(batch) > 2 else None  # positions in the training set
        mixed = self.mix(x, y)
        partner = mixed.partner(indices)
        if self.linear_head:  # the N x V logits are never formed (and nothing is mixed)
            hidden, head = self.net.features(x), self.net.head
            loss = self.driver.linear_loss(hidden, head.weight, y, bias=head.bias, indices=indices)
            logits = None
        else:
            logits = self(mixed.x)
            loss = self.driver.mixed_loss(
                logits, mixed.y_a, mixed.y_b, mixed.lam, indices_a=indices, indices_b=partner
            )
        # checked once per epoch (below) and before any checkpoint: a host read per step
        # would stall a GPU every step
        self._finite_loss.record(loss, batch_idx, self.global_step)
        if logits is None:
            bias = None if head.bias is None else head.bias.detach()
            self.driver.observe_linear(
                hidden.detach(), head.weight.detach(), y, bias=bias, indices=indices
            )
        else:
            self.driver.observe_mixed(
                logits.detach(), mixed.y_a, mixed.y_b, mixed.lam, indices, partner
            )
            # train/acc is counted on the device and logged once per epoch: each self.log
            # call costs ~1 ms of Lightning's bookkeeping, as much as a small model's step.
            # Mixed: lam-weighted accuracy against both labels (the mixup paper's code).
            pred = logits.detach().argmax(-1)
            correct = (pred == mixed.y_a).sum()
            if mixed.lam < 1.0:
                correct = correct * mixed.lam + (pred == mixed.y_b).sum() * (1.0 - mixed.lam)
            self._train_correct = _accumulate(self._train_correct, correct)
            self._train_rows += pred.numel()
        # The epoch's mean loss, batches weighted by their first dimension as Lightning's
        # on_epoch mean weighs them, summed here (its bookkeeping costs ~0.15 ms a step).
        self._train_loss = _accumulate(self._train_loss, loss.detach(), len(y))
        self._train_batches += len(y)
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's last step
            self._check_finite_loss(across_ranks=True)  # before the strategy's update
            self.driver.on_epoch_end()
            self._epoch_ended = True
            self._log_train_epoch()
        # This rank's loss at this step, as Lightning logs one by default (no all-reduce per
        # step), at the steps where someone reads it; the epoch's mean over every rank is
        # logged once, as train/loss_epoch.
        logs = self._logs_this_step()
        if logs or _progress_bar_draws(self.trainer, batch_idx):
            self.log("train/loss_step", loss, prog_bar=True)
        if logs:
            values = self.driver.log_values()
            if values:
                self.log_dict(values, on_step=True, on_epoch=False)
        return loss

    def _log_train_epoch(self) -> None:
        """Log the epoch's mean loss and accuracy, each over every rank's rows (Lightning
        syncs an epoch mean as the sum of value x rows over ranks / the summed rows)."""
        if self._train_loss is not None:
            loss = self._train_loss / self._train_batches
            self.log(
                "train/loss_epoch",
                loss,
                prog_bar=True,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=self._train_batches,
            )
            self._train_loss = None
        if self._train_correct is not None:
            acc = self._train_correct.float() / self._train_rows
            self.log(
                "train/acc",
                acc,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=self._train_rows,
            )
            self._train_correct = None

    def _logs_this_step(self) -> bool:
        """Whether Lightning hands this step's values to a logger (every
        ``log_every_n_steps`` steps, with a logger): the strategy's figures are computed and
        logged only then, not for nothing at every step."""
        return bool(self.trainer.loggers) and logs_this_step(self.trainer)

    def on_train_epoch_end(self) -> None:
        self._check_finite_loss()  # an epoch ended early (max_steps) or of unknown length
        if not self._epoch_ended:  # no known last step (data of unknown length)
            self.driver.on_epoch_end()
            self._log_train_epoch()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite_loss()  # never write weights a non-finite loss has trained
        # The epoch's sums so far (None at an epoch end): a run resumed mid-epoch logs
        # train/loss_epoch and train/acc over the whole epoch, as the uninterrupted run does.
        checkpoint[_EPOCH_SUMS] = {
            "correct": self._train_correct,
            "rows": self._train_rows,
            "loss": self._train_loss,
            "batches": self._train_batches,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = checkpoint.get(_EPOCH_SUMS)  # absent from checkpoints of earlier versions
        if sums is not None:
            self._train_correct, self._train_rows = sums["correct"], sums["rows"]
            self._train_loss, self._train_batches = sums["loss"], sums["batches"]

    def _check_finite_loss(self, *, across_ranks: bool = False) -> None:
        """Raise FloatingPointError naming the first non-finite training loss of this epoch
        (one host read; ``across_ranks``: any rank's, a collective)."""
        bad = self._finite_loss.first_non_finite(across_ranks=across_ranks)
        if bad is not None:
            batch, step, value = bad
            raise FloatingPointError(
                f"non-finite training loss {value} at global step {step} (epoch "
                f"{self.current_epoch}, batch {batch}); strategy {self.strategy!r} with values "
                f"at the end of that epoch {self.strategy.log_values()}"
            )

    # ------------------------------------------------------------------ evaluation
    def on_validation_start(self) -> None:
        # val/loss is the strategy's loss, so its epsilon schedule needs its epoch before the
        # first validation pass: fit's sanity check runs before on_train_start (after a
        # resume, at the checkpoint's epoch: its weights'), and a validate of a module that
        # never trained starts no epoch. A later validate keeps the epoch training ended with.
        if self.trainer.state.fn == TrainerFn.FITTING or self.strategy.max_epochs is None:
            self.driver.set_epoch(self.current_epoch, self.trainer.max_epochs)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        # val/loss: summed on the device, logged once per validation (one self.log call
        # instead of one per batch); batches weigh by their first dimension, as Lightning's
        self._val_loss = _accumulate(self._val_loss, self.driver.loss(logits, y).detach(), len(y))
        self._val_rows += len(y)
        self.val_metrics.update(logits, y)
        if self._fitting():
            self.driver.observe_validation(logits.detach(), y)
        # Callbacks (temperature scaling, reliability diagrams) read these.
        return {"logits": logits.detach(), "targets": y}

    def on_validation_epoch_end(self) -> None:
        if self._val_loss is not None and not self.trainer.sanity_checking:
            loss = self._val_loss / self._val_rows
            self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=self._val_rows)
        self._val_loss, self._val_rows = None, 0
        values = self._log_suite(self.val_metrics, "val")
        if self._fitting():
            validation = ValidationPass.from_suite(values, self.val_metrics.per_class())
            self.driver.on_validation_end(validation)
        self.val_metrics.reset()

    def _fitting(self) -> bool:
        """Validation inside fit (not the sanity check, not a later validate/test)."""
        return self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        self.test_metrics.update(logits, y)
        return {"logits": logits.detach(), "targets": y}

    def on_test_epoch_end(self) -> None:
        self._log_suite(self.test_metrics, "test")
        self.test_metrics.reset()

    def _log_suite(self, suite: CalibrationSuite, stage: str) -> dict[str, float]:
        """Log the suite's figures as ``<stage>/<name>``; return them by name."""
        values = {k: float(v) for k, v in suite.compute().items()}
        if self.token_level:
            values["ppl"] = perplexity(values["nll"])
        if self.trainer.sanity_checking:
            # computed (the check runs the metric code), not logged: Lightning throws the
            # sanity check's logs away, and each self.log call costs it ~1 ms
            return values
        # Already synced across ranks by the metric itself, so identical on every rank;
        # Lightning cannot see that and asks for sync_dist: the max of identical values is
        # that value, exactly (a mean could round).
        self.log_dict(
            {f"{stage}/{k}": v for k, v in values.items()},
            prog_bar=False,
            sync_dist=True,
            reduce_fx="max",
        )
        return values

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def _accumulate(total: Tensor | None, value: Tensor, weight: int = 1) -> Tensor:
    """``total + weight * value``, on the device (one kernel; the first value starts it)."""
    if total is None:
        return value * weight if weight != 1 else value
    return torch.add(total, value, alpha=weight)


def _progress_bar_draws(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the progress bar shows this training step's logged values: Lightning's
    ``TQDMProgressBar`` redraws every ``refresh_rate`` batches and at the epoch's last one
    (and not at all when disabled); any other progress bar may read them at every step."""
    bar = trainer.progress_bar_callback
    if bar is None:
        return False
    if not isinstance(bar, TQDMProgressBar):
        return True
    if not bar.is_enabled:
        return False
    n = batch_idx + 1
    return n % bar.refresh_rate == 0 or n == trainer.num_training_batches
