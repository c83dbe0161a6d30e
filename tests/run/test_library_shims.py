"""adaptls.run.library_shims: each workaround does its job, and the upstream behaviour it works
around is still there (when a control test fails, the workaround can go)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import wandb
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from adaptls.run.library_shims import drop_wandb_anonymous_setting


def init_kwargs(monkeypatch: pytest.MonkeyPatch, logger: WandbLogger) -> dict[str, Any]:
    """The keyword arguments ``logger`` passes to ``wandb.init`` when its run starts."""
    seen: dict[str, Any] = {}

    def fake_init(**kwargs: Any) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "run", None)
    logger.experiment  # noqa: B018 - starting the run is the point
    return seen


def test_lightning_still_passes_anonymous_none(monkeypatch, tmp_path):
    """The control: without the shim, wandb.init gets anonymous=None (which wandb >= 0.19
    reports as a deprecated setting on every run)."""
    kwargs = init_kwargs(monkeypatch, WandbLogger(save_dir=tmp_path, offline=True))
    assert "anonymous" in kwargs and kwargs["anonymous"] is None


def test_the_shim_leaves_anonymous_out_and_the_rest_alone(monkeypatch, tmp_path):
    logger = WandbLogger(save_dir=tmp_path, offline=True, project="p", group="g")
    drop_wandb_anonymous_setting(logger)
    kwargs = init_kwargs(monkeypatch, logger)
    assert "anonymous" not in kwargs
    assert kwargs["project"] == "p" and kwargs["group"] == "g" and kwargs["dir"] == str(tmp_path)


def test_an_explicit_anonymous_request_is_passed_on(monkeypatch, tmp_path):
    logger = WandbLogger(save_dir=tmp_path, offline=True, anonymous=True)
    drop_wandb_anonymous_setting(logger)
    assert init_kwargs(monkeypatch, logger)["anonymous"] == "allow"


def test_other_loggers_are_untouched(tmp_path):
    logger = CSVLogger(tmp_path)
    drop_wandb_anonymous_setting(logger)
    drop_wandb_anonymous_setting(object())
    assert logger.save_dir == str(tmp_path)


def test_last_checkpoint_agrees_with_lightnings_lookup(tmp_path):
    """The control and the shim together: ModelCheckpoint still has the lookup fit uses, and
    the answer follows a last*.ckpt file in the callback's folder."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from adaptls.run.library_shims import last_checkpoint

    callback = ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    assert callable(getattr(callback, "_find_last_checkpoints", None))
    trainer = pl.Trainer(logger=False, callbacks=[callback], enable_progress_bar=False)
    assert last_checkpoint(trainer) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert last_checkpoint(trainer) is None
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert last_checkpoint(trainer) == tmp_path / "checkpoints" / "last.ckpt"
    newer = tmp_path / "checkpoints" / "last-v1.ckpt"  # fit takes the newest, so do we
    newer.write_bytes(b"")
    os.utime(newer, (time.time() + 60, time.time() + 60))
    assert last_checkpoint(trainer) == newer
    no_checkpoints = pl.Trainer(logger=False, enable_checkpointing=False)
    assert last_checkpoint(no_checkpoints) is None
