"""SmoothingClassifier: the only place a smoothing strategy meets Lightning."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from adaptls.metrics import CalibrationSuite
from adaptls.metrics.nll import perplexity
from adaptls.mix import Mixed, NoMix
from adaptls.models.linear_head import has_linear_head
from adaptls.run.finite_loss import FiniteLossCheck
from adaptls.run.rank_states import restore_rank_state, save_rank_states
from adaptls.smoothing import Strategy, ValidationPass
from adaptls.smoothing.driver import StrategyDriver

log = logging.getLogger(__name__)

# The checkpoint key under which earlier versions kept the training epoch's running sums.
_OLD_EPOCH_SUMS = "adaptls_train_epoch_sums"

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
    FloatingPointError naming its first step. ``train/loss_step`` (this rank's loss) is
    logged at every step, as Lightning logs a step value; ``train/loss_epoch``,
    ``train/acc`` and ``val/loss`` are torchmetrics ``MeanMetric`` s (row-weighted, as
    Lightning's ``on_epoch`` mean; synced across ranks by torchmetrics), logged once per
    epoch; the training ones are persistent, so a checkpoint written mid-epoch carries the
    epoch's running sums in its ``state_dict`` and a resumed run logs them over the whole
    epoch. The strategy's ``log_values()`` are logged at every step when there is a logger
    (Lightning hands a logger every ``log_every_n_steps``-th).

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
        # Submodules, so they follow the module's device; their states are not persistent
        # (a validation or test pass never resumes half-way).
        self.val_metrics = CalibrationSuite(num_classes, class_counts, n_bins=n_bins)
        self.test_metrics = CalibrationSuite(num_classes, class_counts, n_bins=n_bins)
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
        # The epoch means over rows (NaNs are the finite-loss check's to report, so no NaN
        # check: it would read the device at every update). nan_strategy="disable" also drops
        # an update's ``weight`` (torchmetrics 1.9 replaces it with ones), so a batch's mean
        # loss is given once per row (_per_row): short batches weigh by their rows. The
        # training ones are persistent: their running sums travel in the state_dict of a
        # checkpoint written mid-epoch.
        self.train_loss_epoch = MeanMetric(nan_strategy="disable")
        self.train_acc = MeanMetric(nan_strategy="disable")  # (lam-weighted) hits per row
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.train_loss_epoch.persistent(True)
        self.train_acc.persistent(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        # A run resumed mid-epoch skips that epoch's on_train_epoch_start: the strategy
        # learns its epoch here (after the checkpoint is restored). The epoch's sums take
        # the restored tensors as loaded, on the CPU: a strategy that restores after moving
        # the model (restore_checkpoint_after_setup) would leave them there.
        self.driver.set_epoch(self.current_epoch, self.trainer.max_epochs)
        self.train_loss_epoch.to(self.device)
        self.train_acc.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.driver.set_epoch(self.current_epoch, self.trainer.max_epochs)
        self._epoch_ended = False
        self._finite_loss.reset()
        self.train_loss_epoch.reset()
        self.train_acc.reset()

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
            # Mixed: lam-weighted accuracy against both labels (the mixup paper's code).
            pred = logits.detach().argmax(-1)
            hits = (pred == mixed.y_a).float()
            if mixed.lam < 1.0:
                hits = hits * mixed.lam + (pred == mixed.y_b).float() * (1.0 - mixed.lam)
            self.train_acc.update(hits)
        # batches weighted by their first dimension, as Lightning's on_epoch mean weighs them
        self.train_loss_epoch.update(_per_row(loss.detach(), len(y)))
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's last step
            self._check_finite_loss(across_ranks=True)  # before the strategy's update
            self.driver.on_epoch_end()
            self._epoch_ended = True
            self._log_train_epoch()
        # This rank's loss at this step, as Lightning logs a step value (no all-reduce per
        # step); the epoch's mean over every rank is train/loss_epoch.
        self.log("train/loss_step", loss, prog_bar=True)
        if self.trainer.loggers:
            values = self.driver.log_values()
            if values:
                self.log_dict(values, on_step=True, on_epoch=False)
        return loss

    def _log_train_epoch(self) -> None:
        """Log the epoch's mean loss and accuracy over every rank's rows: Lightning computes
        the metrics (torchmetrics syncs them across ranks) at the end of the epoch."""
        self.log(
            "train/loss_epoch", self.train_loss_epoch, prog_bar=True, on_step=False, on_epoch=True
        )
        if self.train_acc.update_called:  # no logits with a linear head: no accuracy
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self._check_finite_loss()  # an epoch ended early (max_steps) or of unknown length
        if not self._epoch_ended:  # no known last step (data of unknown length)
            self.driver.on_epoch_end()
            self._log_train_epoch()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite_loss()  # never write weights a non-finite loss has trained
        # Each rank's running sums and strategy statistics (a collective: every rank writes)
        parameters = {name for name, _ in self.named_parameters()}
        save_rank_states(checkpoint, parameters, self.trainer.world_size)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _upgrade_epoch_sums(checkpoint)
        try:
            trainer = self.trainer
        except RuntimeError:  # load_from_checkpoint: no trainer, the weights and sums only
            return
        if trainer.state.fn == TrainerFn.FITTING:  # evaluation needs the weights only
            restore_rank_state(checkpoint, trainer.global_rank, trainer.world_size)

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

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()  # the sanity check's sums are never logged

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        # batches weighted by their first dimension, as Lightning's on_epoch mean weighs them
        self.val_loss.update(_per_row(self.driver.loss(logits, y).detach(), len(y)))
        self.val_metrics.update(logits, y)
        if self._fitting():
            self.driver.observe_validation(logits.detach(), y)
        # Callbacks (temperature scaling, reliability diagrams) read these.
        return {"logits": logits.detach(), "targets": y}

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_called and not self.trainer.sanity_checking:
            self.log("val/loss", self.val_loss)  # computed (synced) by Lightning after this hook
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


def _per_row(batch_mean: Tensor, rows: int) -> Tensor:
    """A batch's mean repeated for each of its rows (a stride-0 view, no copy)."""
    return batch_mean.expand(rows)


def _upgrade_epoch_sums(checkpoint: dict[str, Any]) -> None:
    """Give a checkpoint of an earlier version (its epoch sums under their own key, not in
    the ``state_dict``) the metric states this version loads, with the same sums."""
    state = checkpoint.get("state_dict")
    if state is None or "train_loss_epoch.mean_value" in state:
        return
    sums = checkpoint.pop(_OLD_EPOCH_SUMS, None) or {}
    for name, total, count in (
        ("train_loss_epoch", sums.get("loss"), sums.get("batches", 0)),
        ("train_acc", sums.get("correct"), sums.get("rows", 0)),
    ):
        total = torch.zeros(()) if total is None else total.detach().float().cpu()
        state[f"{name}.mean_value"] = total
        state[f"{name}.weight"] = torch.tensor(float(count))
