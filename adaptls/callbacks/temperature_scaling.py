"""Test metrics before and after temperature scaling fitted on validation logits."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from adaptls.calibration import fit_temperature
from adaptls.metrics import CalibrationSuite


class TemperatureScaling(pl.Callback):
    """Fit one temperature T on the latest validation pass, report ``test/ts/<metric>``.

    The validation logits of the most recent (non-sanity) validation pass are kept; at the
    start of testing, T is fitted on them by NLL (:func:`adaptls.calibration.fit_temperature`,
    all ranks' logits gathered, so every rank fits the same T). Test logits are divided by T
    and the whole calibration suite is logged again under ``test/ts/``, with T itself as
    ``test/ts/temperature``. ``adaptls.train`` validates the best checkpoint right before
    testing it, so T belongs to the tested weights. Accuracy is unchanged by construction.
    """

    def __init__(self, n_bins: int = 15) -> None:
        self.n_bins = n_bins
        self.temperature: float | None = None
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._suite: CalibrationSuite | None = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logits, self._targets = [], []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any
    ) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict):
            return
        self._logits.append(outputs["logits"].float().cpu())
        self._targets.append(outputs["targets"].cpu())

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._logits:
            self.temperature = None
            return
        logits = _gather(pl_module, torch.cat(self._logits))
        targets = _gather(pl_module, torch.cat(self._targets))
        self.temperature = fit_temperature(logits, targets)
        self._suite = CalibrationSuite(
            pl_module.num_classes, pl_module.class_counts, n_bins=self.n_bins
        ).to(pl_module.device)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any
    ) -> None:
        if self.temperature is not None and isinstance(outputs, dict):
            self._suite.update(outputs["logits"] / self.temperature, outputs["targets"])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.temperature is None:
            return
        values = {f"test/ts/{k}": float(v) for k, v in self._suite.compute().items()}
        values["test/ts/temperature"] = self.temperature
        # Identical on every rank (the suite is synced): see SmoothingClassifier._log_suite.
        pl_module.log_dict(values, sync_dist=True, reduce_fx="max")
        self._suite = None


def _gather(pl_module: pl.LightningModule, tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks (a no-op in one process)."""
    if pl_module.trainer.world_size == 1:
        return tensor
    gathered = pl_module.all_gather(tensor.to(pl_module.device))
    return gathered.reshape(-1, *tensor.shape[1:]).cpu()
