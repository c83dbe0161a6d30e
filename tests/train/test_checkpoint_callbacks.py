"""The default checkpoint callbacks (conf/callbacks/default.yaml): best.ckpt holds the best
epoch by the monitored metric, last.ckpt the latest epoch, improving or not, and
``ckpt_path=last`` resumes from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from adaptls.run.checkpoint_io import AtomicCheckpointIO

CHECKPOINTS = ("model_checkpoint", "last_checkpoint")


class _Scripted(pl.LightningModule):
    """Logs the monitored metric from a script, one value per epoch."""

    def __init__(self, script: list[float], monitor: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.script, self.monitor = script, monitor

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log(self.monitor, self.script[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(cfg, script: list[float], epochs: int, ckpt_path: str | None = None) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[instantiate(cfg.callbacks[name]) for name in CHECKPOINTS],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(_Scripted(script, cfg.optimized_metric), loader, loader, ckpt_path=ckpt_path)
    return trainer


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


@pytest.mark.parametrize("script", [[3.0, 2.0, 1.0], [3.0, 2.0, 4.0], [1.0, 2.0, 3.0]])
def test_last_is_the_latest_epoch_and_best_the_best(compose_train, tmp_path, script):
    cfg = compose_train("logger=none", output_dir=tmp_path)
    _fit(cfg, script, epochs=len(script))
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert _epoch(folder / "best.ckpt") == script.index(min(script))
    assert _epoch(folder / "last.ckpt") == len(script) - 1


def test_ckpt_path_last_resumes_from_the_latest_epoch(compose_train, tmp_path):
    cfg = compose_train("logger=none", output_dir=tmp_path)
    script = [3.0, 2.0, 4.0, 1.5]
    _fit(cfg, script, epochs=3)  # the monitor does not improve at the last epoch
    trainer = _fit(cfg, script, epochs=4, ckpt_path="last")
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert trainer.global_step == 8  # two batches per epoch: epochs 0-2 were not trained again
    assert (_epoch(folder / "best.ckpt"), _epoch(folder / "last.ckpt")) == (3, 3)
    assert float(trainer.checkpoint_callback.best_model_score) == 1.5
