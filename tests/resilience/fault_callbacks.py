"""Callbacks the resilience tests inject into real runs (``+callbacks.x={_target_: ...}``):
faults at chosen points, and a dump of every rank's strategy state."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


class KillAtEpochStart(pl.Callback):
    """SIGKILL this process (no cleanup at all) when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(pl.Callback):
    """Send ``signum`` to this process after global step ``step`` (on every rank, or on
    rank ``rank`` only). Callbacks added on the command line run after the default ones, so
    the run's stop agreement (CheckpointOnInterrupt) sees the signal one step later."""

    def __init__(self, step: int, signum: int = int(signal.SIGTERM), rank: int = -1) -> None:
        self.step, self.signum, self.rank = step, signum, rank

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and self.rank in (-1, trainer.global_rank):
            os.kill(os.getpid(), self.signum)


class PoisonWeightsAtEpoch(pl.Callback):
    """Fill the first parameter with NaN when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class DumpStrategyState(pl.Callback):
    """Write every rank's strategy ``state_dict`` to ``<dirpath>/rank<r>.pt`` at fit end, and
    the per-sample counts a strategy collected in each epoch (before its cross-rank
    reduction) to ``<dirpath>/counts_rank<r>_epoch<e>.pt``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The driver reduces the strategy's statistics across ranks in on_epoch_end (called
        # from the epoch's last training step): record this rank's counts just before.
        strategy, driver = pl_module.strategy, pl_module.driver
        reduce_and_update = driver.on_epoch_end

        def on_epoch_end() -> None:
            counts = getattr(strategy, "next_count", None)
            if counts is not None:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                name = f"counts_rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt"
                torch.save(counts.clone(), self.dirpath / name)
            reduce_and_update()

        driver.on_epoch_end = on_epoch_end

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.strategy.state_dict(), self.dirpath / f"rank{trainer.global_rank}.pt")
