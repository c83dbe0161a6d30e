"""adaptls.run.library_shims: each workaround does its job, and the upstream behaviour it works
around is still there (when a control test fails, the workaround can go)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import wandb
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from adaptls.run.library_shims import drop_wandb_anonymous_setting, request_lightning_stop


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


class _TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=2)


class _StopAfterBatch(pl.Callback):
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_idx == self.batch:
            assert request_lightning_stop(trainer)


def _tiny_trainer(tmp_path, *callbacks: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=list(callbacks), default_root_dir=tmp_path,
    )  # fmt: skip


def test_lightning_still_has_no_public_way_to_request_its_sigterm_stop(tmp_path):
    """The control: ``received_sigterm`` is a read-only property of the trainer."""
    trainer = _tiny_trainer(tmp_path)
    with pytest.raises(AttributeError):
        trainer.received_sigterm = True  # type: ignore[misc]
    assert request_lightning_stop(object()) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("batch", "steps", "epoch"), [(1, 2, 0), (3, 4, 1)])
def test_a_requested_stop_ends_fit_where_lightning_stops_on_sigterm(tmp_path, batch, steps, epoch):
    """Mid-epoch: after the batch is counted as completed; at the epoch's last batch:
    after the epoch is counted."""
    trainer = _tiny_trainer(tmp_path, _StopAfterBatch(batch))
    with pytest.raises(SIGTERMException):
        trainer.fit(_TinyModule())
    assert trainer.global_step == steps
    assert trainer.fit_loop.epoch_loop.batch_progress.current.completed == batch + 1
    assert trainer.current_epoch == epoch
