"""Save a resumable checkpoint when a run is interrupted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from adaptls.run.library_shims import request_lightning_stop
from adaptls.run.stop_request import STOP_REQUEST, StopRequest

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(pl.Callback):
    """On SIGTERM (every process, or any one of a DDP run) or Ctrl-C, write ``last.ckpt``
    and stop.

    SIGTERM is recorded, not acted on where it lands (:mod:`adaptls.run.stop_request`);
    after every training step all ranks agree whether any was signalled, and if so they
    stop together where Lightning stops on SIGTERM: after that step, or, at the last step
    of an epoch, after the epoch's end (its validation and checkpoints). The last epoch is
    completed instead: only the evaluation is left. Every rank then writes its part of the
    one ``last.ckpt`` (atomically, rank 0 writing) and ``adaptls.train`` exits with status
    143 (128 + SIGTERM), which requeueing launchers read as "terminated";
    ``ckpt_path=last`` goes on from there.

    The checkpoint goes where the ModelCheckpoint callback writes (``ckpt_path=last``
    finds it). Only interruptions trigger it: a run that fails (e.g. a non-finite loss)
    keeps its last good checkpoint untouched. Ctrl-C under several processes stops each at
    its own point, so no checkpoint can be agreed: the last epoch-end one stays.

    Why not Lightning's ``OnExceptionCheckpoint`` (2.x): its mere presence makes
    ``trainer.fit(ckpt_path=None)`` resume from ``"last"`` (a fresh run would silently
    continue whatever checkpoint its directory holds, with a warning on every run), it saves
    on every exception (a failed run would overwrite its last good checkpoint with the
    failing weights) and it deletes its file after every successful fit. Only its one-line
    core, ``trainer.save_checkpoint(path)``, is what is wanted here.
    """

    def __init__(self, request: StopRequest | None = None) -> None:
        self.request = request if request is not None else STOP_REQUEST
        self._stop_after_epoch = False

    # Lightning installs its own SIGTERM handler when each fit/validate/test starts: this
    # one replaces it at the first hooks that run after that.
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.request.install()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.request.install()
        self._stop_after_epoch = False

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.request.install()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.request.install()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if not self.request.agreed():  # a collective: every rank is here, once per step
            return
        last_epoch = (
            trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        )
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last step
            self._stop_after_epoch = not last_epoch
        else:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_after_epoch:
            self._stop(trainer)

    def _stop(self, trainer: pl.Trainer) -> None:
        if not request_lightning_stop(trainer):
            raise SIGTERMException  # Lightning changed: stop here (resume redoes this batch)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        if isinstance(exception, KeyboardInterrupt) and trainer.world_size > 1:
            log.warning(
                "interrupted: the %d processes stopped at their own points, no checkpoint "
                "written (ckpt_path=last resumes from the last epoch's)",
                trainer.world_size,
            )
            return
        callback = trainer.checkpoint_callback
        dirpath = getattr(callback, "dirpath", None) or trainer.default_root_dir
        path = Path(dirpath) / "last.ckpt"
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning("interrupted at global step %d: saved %s", trainer.global_step, path)
