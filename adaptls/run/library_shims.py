"""Workarounds that need a library's private state: each one documented, tested, here only.

A workaround belongs here when no public API reaches what it must change. Each one checks
that the private state still looks as expected and otherwise does nothing, so a library
upgrade can bring back the symptom it hides, never break a run; the tests in
``tests/run/test_library_shims.py`` notice when a workaround stops working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger


def drop_wandb_anonymous_setting(logger: Any) -> None:
    """Stop Lightning's WandbLogger from passing ``anonymous=None`` to ``wandb.init``.

    Lightning (2.x) always passes ``anonymous`` (None unless asked for), and wandb >= 0.19
    reports any ``anonymous`` value as a deprecated setting ("The anonymous setting has no
    effect and will be removed") on every run. WandbLogger keeps ``wandb.init``'s keyword
    arguments in the private dict ``_wandb_init``, and no constructor argument leaves the
    key out; this removes it when it is None (``anonymous=True`` is passed on).
    """
    init_kwargs = getattr(logger, "_wandb_init", None) if isinstance(logger, WandbLogger) else None
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous", "") is None:
        del init_kwargs["anonymous"]


def last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The checkpoint ``trainer.fit(ckpt_path="last")`` resumes from, or None.

    Lightning looks for ``last*.ckpt`` in each ModelCheckpoint callback's folder through the
    private ``ModelCheckpoint._find_last_checkpoints(trainer)`` and takes the newest;
    asking the same method means a message about it (and the path metrics.json records for
    ``eval_checkpoint=last``) never disagrees with what ``fit`` does. Without it: the same search in each callback's ``dirpath`` (local folders only).
    """
    found: set[Path] = set()
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        find = getattr(callback, "_find_last_checkpoints", None)
        if find is not None:
            found |= {Path(p) for p in find(trainer)}
        elif callback.dirpath is not None:
            found |= set(Path(callback.dirpath).glob("last*.ckpt"))
    found = {p for p in found if p.is_file()}
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def request_lightning_stop(trainer: pl.Trainer) -> bool:
    """Make fit stop where Lightning stops on SIGTERM; False where that state is missing.

    Lightning (2.x) raises ``SIGTERMException`` at its own consistent points once its
    signal connector's ``received_sigterm`` is set: after the current training batch has
    been counted as completed (mid-epoch), or after the epoch has been counted (at its
    last batch), so the interrupt checkpoint's loop state and loader position agree. No
    public API sets it: the flag is the private ``trainer._signal_connector.received_sigterm``.
    """
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not isinstance(getattr(connector, "received_sigterm", None), bool):
        return False
    connector.received_sigterm = True
    return True
