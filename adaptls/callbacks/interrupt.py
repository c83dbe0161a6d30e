"""Save a resumable checkpoint when a run is interrupted."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(pl.Callback):
    """On Ctrl-C (KeyboardInterrupt) or SIGTERM, write ``last.ckpt`` and stop.

    The checkpoint goes where the ModelCheckpoint callback writes (``ckpt_path=last``
    finds it). Only interruptions trigger it: a run that fails (e.g. a non-finite loss)
    keeps its last good checkpoint untouched.
    """

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        callback = trainer.checkpoint_callback
        dirpath = getattr(callback, "dirpath", None) or trainer.default_root_dir
        path = Path(dirpath) / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning("interrupted at global step %d: saved %s", trainer.global_step, path)
