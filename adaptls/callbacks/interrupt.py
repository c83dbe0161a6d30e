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

    Why not Lightning's ``OnExceptionCheckpoint`` (2.x): its mere presence makes
    ``trainer.fit(ckpt_path=None)`` resume from ``"last"`` (a fresh run would silently
    continue whatever checkpoint its directory holds, with a warning on every run), it saves
    on every exception (a failed run would overwrite its last good checkpoint with the
    failing weights) and it deletes its file after every successful fit. Only its one-line
    core, ``trainer.save_checkpoint(path)``, is what is wanted here.
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
