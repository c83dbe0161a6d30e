"""What a training run hands its logger and its progress bar: the per-step loss, the epoch
means of the loss and accuracy, and the strategy's figures at the steps Lightning writes
(``log_every_n_steps``)."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar

from adaptls.train import build


def test_the_logger_gets_epoch_accuracy_and_strategy_figures(compose_train, small, tmp_path):
    # 420 training rows in 5 batches (the last of 36) and 180 validation rows (96 + 84): the
    # epoch means must weigh the short batches by their rows
    uneven = [o for o in small if not o.startswith("data.batch_size=")]
    cfg = compose_train(
        *uneven,
        "data.batch_size=96",
        "data.val_fraction=0.3",
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
    correct, rows, loss_sums = [0, 0], [0, 0], [0.0, 0.0]
    batch_sizes: dict[str, set[int]] = {"train": set(), "val": set()}
    step_losses: dict[int, float] = {}
    step = module.training_step

    def training_step(batch, batch_idx):  # accuracy and loss of every batch, as trained
        epoch = module.current_epoch
        logits = module(batch[0]).detach()
        correct[epoch] += int((logits.argmax(-1) == batch[1]).sum())
        rows[epoch] += len(batch[1])
        batch_sizes["train"].add(len(batch[1]))
        global_step = module.global_step
        loss = step(batch, batch_idx)
        loss_sums[epoch] += float(loss) * len(batch[1])
        step_losses[global_step] = float(loss)
        return loss

    module.training_step = training_step
    val_sums: list[list[float]] = []
    val_step = module.validation_step

    def validation_step(batch, batch_idx):  # the row-weighted loss of every batch
        if batch_idx == 0:
            val_sums.append([0.0, 0])
        loss = float(module.strategy(module(batch[0]), batch[1]))
        val_sums[-1][0] += loss * len(batch[1])
        val_sums[-1][1] += len(batch[1])
        batch_sizes["val"].add(len(batch[1]))
        return val_step(batch, batch_idx)

    module.validation_step = validation_step
    torch.manual_seed(0)
    trainer.fit(module, datamodule=datamodule)
    assert batch_sizes == {"train": {96, 36}, "val": {96, 84}}
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
    # every 2nd step, the loss of that very step
    losses = {int(r["step"]): float(r["train/loss_step"]) for r in lines if r["train/loss_step"]}
    assert losses == {s: pytest.approx(step_losses[s], rel=1e-6) for s in (1, 3, 5, 7, 9)}
    # once per epoch, the mean over the epoch's rows, as Lightning's on_epoch mean
    epoch_loss = [float(r["train/loss_epoch"]) for r in lines if r.get("train/loss_epoch")]
    assert epoch_loss == pytest.approx([loss_sums[0] / rows[0], loss_sums[1] / rows[1]], rel=1e-5)


@pytest.mark.parametrize("refresh_rate", [1, 3, 10])
def test_the_progress_bar_shows_each_redrawn_steps_own_loss(
    compose_train, small, tmp_path, monkeypatch, refresh_rate
):
    """At every redraw of the default TQDM bar, it shows that step's own loss."""
    cfg = compose_train(
        *small,
        "logger=none",
        "trainer.max_epochs=2",
        f"callbacks.progress_bar.refresh_rate={refresh_rate}",
        "+trainer.limit_train_batches=7",
        "+trainer.limit_val_batches=2",
        output_dir=tmp_path,
    )
    pl.seed_everything(0)
    datamodule, module, trainer = build(cfg)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, TQDMProgressBar) and bar.refresh_rate == refresh_rate
    losses = _record_step_losses(module)
    shown: list[tuple[int, float]] = []

    def on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx):
        # what TQDMProgressBar draws: its own postfix, read where it sets it
        before = bar.train_progress_bar.n
        original(trainer, pl_module, outputs, batch, batch_idx)
        if bar.train_progress_bar.n != before:  # redrawn at this step
            shown.append((len(losses) - 1, bar.get_metrics(trainer, pl_module)["train/loss_step"]))

    original = bar.on_train_batch_end
    monkeypatch.setattr(bar, "on_train_batch_end", on_train_batch_end)
    trainer.fit(module, datamodule=datamodule)
    redrawn = [i for i in range(14) if (i % 7 + 1) % refresh_rate == 0 or i % 7 == 6]
    assert [i for i, _ in shown] == redrawn
    assert [v for _, v in shown] == [pytest.approx(losses[i], rel=1e-6) for i in redrawn]


def test_an_unknown_progress_bar_gets_the_loss_at_every_step(compose_train, small, tmp_path):
    """A progress bar that reads the logged values at every step gets every step's loss."""
    from pytorch_lightning.callbacks.progress import ProgressBar

    seen: list[float] = []

    class EveryStep(ProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(self.get_metrics(trainer, pl_module)["train/loss_step"]))

    cfg = compose_train(
        *small,
        "logger=none",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=1",
        output_dir=tmp_path,
    )
    pl.seed_everything(0)
    datamodule, module, trainer = build(cfg)
    losses = _record_step_losses(module)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=1,
        logger=False,
        callbacks=[EveryStep()],
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    assert seen == pytest.approx(losses, rel=1e-6)


def _record_step_losses(module: pl.LightningModule) -> list[float]:
    """Every training step's loss, in order, as the module returns it."""
    losses: list[float] = []
    step = module.training_step

    def training_step(batch, batch_idx):
        loss = step(batch, batch_idx)
        losses.append(float(loss))
        return loss

    module.training_step = training_step
    return losses
