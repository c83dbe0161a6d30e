"""Best and last checkpoints: last.ckpt current every epoch, serialized once when it holds
the best checkpoint's state."""

from __future__ import annotations

from typing import Any
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor

from adaptls.checks import atomic_link


class SharedLastCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``last.ckpt`` written at every epoch end, and,
    when it is saved right after a top-k checkpoint, shared with it.

    Every epoch: since Lightning 2.6 ``save_last=True`` writes ``last.ckpt`` only when a
    top-k checkpoint was saved at the same step, so with ``save_top_k=1`` and a monitor it
    stays at the best epoch while the monitor does not improve (a run killed then resumes
    from there and trains those epochs again). Here it is saved at every epoch end that
    saves checkpoints (train epoch end or validation end, as configured) when nothing was
    saved at that step, as before 2.6.

    Shared: a ``last.ckpt`` saved right after a top-k checkpoint, in the same hook at the
    same step, is a hard link to that file (:func:`adaptls.checks.atomic_link`) instead of
    a second ``torch.save`` + fsync of the same state. Nothing runs between the two saves,
    so the files would hold the same bytes except the callback's own ``last_model_path``,
    which the top-k file records *before* Lightning sets it to the last path. At the first
    save (empty ``last_model_path``) that path is therefore named before the top-k save,
    exactly as Lightning then names it (unversioned, the file not existing yet); the link
    is made only when the top-k file records the last path, so ``last.ckpt`` holds what
    Lightning would have written. Otherwise, and where no hard link can be made, it is
    written in full. The one difference from Lightning's files: the first ``best.ckpt``
    records ``last_model_path`` as the last file's path instead of ``""``. Every file is
    still complete or absent (later saves replace a name, never write into the shared
    file). Measured (``scripts/bench_overhead.py``): one checkpoint write costs 3-7 ms here
    (serialization, fsync of the file and of its directory), about 2% of a 29-step epoch
    of the default model.

    It relies on private ``ModelCheckpoint`` methods (the three ``_save_*`` it overrides,
    ``_should_skip_saving_checkpoint``, ``_should_save_on_train_epoch_end``,
    ``_monitor_candidates``; unchanged in signature from Lightning 2.0 to 2.6); the tests
    compare its files with Lightning's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (path, last_model_path recorded in it, step, hook) of the save just made, while
        # it may still be shared; any other save or the last save itself clears it
        self._written: tuple[str, str, int, str | None] | None = None
        self._shareable: tuple[str, str, int, str | None] | None = None

    @property
    def state_key(self) -> str:
        """Lightning's key for this callback's state, so that checkpoints written with
        ``ModelCheckpoint`` resume here (and back) with their best score and paths."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: pl.Trainer) -> None:
        """Save ``last.ckpt`` unless a checkpoint was saved at this step (or none may be)."""
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_topk_checkpoint(self, trainer: pl.Trainer, candidates: dict[str, Tensor]) -> None:
        self._written = None
        before = self.last_model_path
        if self.save_last and not before:  # the first save: name the last file up front
            last = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
            if not self.file_exists(last, trainer):  # else Lightning picks a versioned name
                self.last_model_path = last
        super()._save_topk_checkpoint(trainer, candidates)
        if self._written is None:  # nothing saved: as it was
            self.last_model_path = before
        self._shareable, self._written = self._written, None

    def _save_last_checkpoint(self, trainer: pl.Trainer, candidates: dict[str, Tensor]) -> None:
        try:
            super()._save_last_checkpoint(trainer, candidates)
        finally:
            self._shareable = None

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        shareable, self._shareable = self._shareable, None
        if (
            shareable is not None
            and filepath == self.last_model_path
            and shareable[0] != filepath
            and shareable[1:] == (filepath, trainer.global_step, _hook(trainer))
            and self._link(trainer, shareable[0], filepath)
        ):
            return
        super()._save_checkpoint(trainer, filepath)
        self._written = (filepath, self.last_model_path, trainer.global_step, _hook(trainer))

    def _link(self, trainer: pl.Trainer, source: str, filepath: str) -> bool:
        """Link on rank 0; every rank learns the outcome (a failed link falls back to a
        full save, which every rank takes part in)."""
        linked = atomic_link(source, filepath) if trainer.is_global_zero else False
        if not trainer.strategy.broadcast(linked, src=0):
            return False
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:  # as after any save (W&B uploads checkpoints on this)
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
        return True


def _hook(trainer: pl.Trainer) -> str | None:
    """The hook running now (the two saves must come from one hook call)."""
    module = trainer.lightning_module
    return getattr(module, "_current_fx_name", None) if module is not None else None
