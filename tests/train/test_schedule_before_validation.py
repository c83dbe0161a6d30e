"""A strategy's epsilon schedule is defined from the first validation pass on (val/loss is the
strategy's loss): Lightning's sanity check, which runs before on_train_start; a resumed run's
sanity check, at the checkpoint's epoch; a validate of a module that never trained. A validate
after fit keeps the epoch training ended with (the factor metrics.json reports)."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.train import build

SCHEDULE = EpsilonSchedule(name="cosine")  # a different factor at every epoch of a short run


class RecordsTheSchedule(pl.Callback):
    """(sanity check?, trainer function, strategy epoch, factor) after each validation batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, str, int, float]] = []

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        strategy = pl_module.strategy
        self.seen.append(
            (
                trainer.sanity_checking,
                trainer.state.fn.value,
                strategy.epoch,
                strategy.schedule_factor,
            )
        )


def _build(compose_train, tiny, small, output_dir, *overrides: str):
    cfg = compose_train(
        "smoothing.schedule=cosine", "scheduler=none", "logger=none", *tiny[1:], *small,
        *overrides, output_dir=output_dir,
    )  # fmt: skip
    datamodule, module, trainer = build(cfg)
    spy = RecordsTheSchedule()
    trainer.callbacks.append(spy)
    return datamodule, module, trainer, spy


def test_the_sanity_check_sees_the_first_epochs_factor(compose_train, tiny, small, tmp_path):
    datamodule, module, trainer, spy = _build(
        compose_train, tiny, small, tmp_path, "trainer.max_epochs=4"
    )
    trainer.fit(module, datamodule=datamodule)
    sanity = [s for s in spy.seen if s[0]]
    assert sanity and all(s[2:] == (0, SCHEDULE.factor(0, 4)) for s in sanity)
    fit = [s[2:] for s in spy.seen if not s[0]]
    assert list(dict.fromkeys(fit)) == [(e, SCHEDULE.factor(e, 4)) for e in range(4)]


def test_a_resumed_run_checks_at_the_checkpoints_epoch(compose_train, tiny, small, tmp_path):
    datamodule, module, trainer, _ = _build(
        compose_train, tiny, small, tmp_path / "first", "trainer.max_epochs=2"
    )
    trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    datamodule, module, trainer, spy = _build(
        compose_train, tiny, small, tmp_path / "resumed", "trainer.max_epochs=4"
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last))
    # the sanity check validates the checkpoint's weights at the epoch they were saved in;
    # training goes on from the next
    saved = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert saved == 1
    sanity = [s[2:] for s in spy.seen if s[0]]
    assert sanity and set(sanity) == {(saved, SCHEDULE.factor(saved, 4))}
    fit = [s[2:] for s in spy.seen if not s[0]]
    assert list(dict.fromkeys(fit)) == [(e, SCHEDULE.factor(e, 4)) for e in (2, 3)]


def test_a_module_that_never_trained_validates_at_epoch_0(compose_train, tiny, small, tmp_path):
    datamodule, module, trainer, spy = _build(
        compose_train, tiny, small, tmp_path, "trainer.max_epochs=4"
    )
    (val,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert math.isfinite(val["val/loss"])
    assert {s[1:] for s in spy.seen} == {("validate", 0, SCHEDULE.factor(0, 4))}


def test_a_validate_of_unknown_length_names_the_schedule(compose_train, tiny, small, tmp_path):
    datamodule, module, _, _ = _build(compose_train, tiny, small, tmp_path, "trainer.max_epochs=4")
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, limit_val_batches=2)
    with pytest.raises(
        ValueError,
        match=r"^schedule 'cosine' needs the run's length in epochs, got max_epochs=None",
    ):
        trainer.validate(module, datamodule=datamodule, verbose=False)


def test_a_validate_after_fit_keeps_the_last_epochs_factor(compose_train, tiny, small, tmp_path):
    datamodule, module, trainer, spy = _build(
        compose_train, tiny, small, tmp_path, "trainer.max_epochs=2"
    )
    trainer.fit(module, datamodule=datamodule)
    spy.seen.clear()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    assert trainer.current_epoch == 2  # fit has counted past its last epoch
    assert {s[1:] for s in spy.seen} == {("validate", 1, SCHEDULE.factor(1, 2))}
    assert module.strategy.summary()["smoothing/schedule_factor"] == SCHEDULE.factor(1, 2)
