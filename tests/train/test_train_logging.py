"""What a training run hands its logger: the per-step loss, the epoch accuracy, and the
strategy's figures at the steps Lightning writes (``log_every_n_steps``), nothing logged
for nothing in between."""

from __future__ import annotations

import csv
import math

import pytest
import pytorch_lightning as pl
import torch

from adaptls.train import build


def test_the_logger_gets_epoch_accuracy_and_strategy_figures(compose_train, small, tmp_path):
    cfg = compose_train(
        *small,
        "smoothing=uniform",
        "smoothing.epsilon=0.2",
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=2",
        "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=3",
        output_dir=tmp_path,
    )
    pl.seed_everything(0)
    datamodule, module, trainer = build(cfg)
    correct, rows = [0, 0], [0, 0]
    step = module.training_step

    def training_step(batch, batch_idx):  # the accuracy of every batch, as the net saw it
        logits = module(batch[0]).detach()
        correct[module.current_epoch] += int((logits.argmax(-1) == batch[1]).sum())
        rows[module.current_epoch] += len(batch[1])
        return step(batch, batch_idx)

    module.training_step = training_step
    val_sums: list[list[float]] = []
    val_step = module.validation_step

    def validation_step(batch, batch_idx):  # the row-weighted loss of every batch
        if batch_idx == 0:
            val_sums.append([0.0, 0])
        loss = float(module.strategy(module(batch[0]), batch[1]))
        val_sums[-1][0] += loss * len(batch[1])
        val_sums[-1][1] += len(batch[1])
        return val_step(batch, batch_idx)

    module.validation_step = validation_step
    torch.manual_seed(0)
    trainer.fit(module, datamodule=datamodule)
    (path,) = tmp_path.glob("csv/*/metrics.csv")
    lines = list(csv.DictReader(path.open()))
    acc = [float(r["train/acc"]) for r in lines if r.get("train/acc")]
    # once per epoch, the float32 ratio of the epoch's hits to its rows
    assert acc == pytest.approx([correct[0] / rows[0], correct[1] / rows[1]], rel=1e-6)
    figures = {
        int(r["step"]): float(r["smoothing/epsilon"]) for r in lines if r["smoothing/epsilon"]
    }
    assert figures == {s: pytest.approx(0.2) for s in (1, 3, 5, 7, 9)}  # every 2nd step
    val_loss = [float(r["val/loss"]) for r in lines if r.get("val/loss")]
    expected = [total / rows for total, rows in val_sums[1:]]  # [0]: the sanity check
    assert val_loss == pytest.approx(expected, rel=1e-5)  # once per validation
    losses = [float(r["train/loss_step"]) for r in lines if r.get("train/loss_step")]
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
