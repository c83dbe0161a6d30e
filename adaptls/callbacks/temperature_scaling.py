"""Test metrics before and after temperature scaling fitted on validation logits."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from adaptls.calibration import DEFAULT_BOUNDS, TemperatureGrid, check_bounds
from adaptls.metrics import CalibrationSuite
from adaptls.metrics.nll import perplexity

log = logging.getLogger(__name__)


class TemperatureScaling(pl.Callback):
    """Fit one temperature T on the latest validation run, report ``test/ts/<metric>``.

    T is fitted by NLL on the most recent ``trainer.validate`` pass (the validation passes
    inside fit are skipped: they cost the fit's statistics and their weights are not the
    tested ones). The logits are not kept: each batch adds its NLL statistics on a grid of
    temperatures (:class:`adaptls.calibration.TemperatureGrid`, memory O(grid), so it works
    for token logits at vocabulary scale), summed across ranks at the start of testing so
    that every rank fits the same T. Test logits are divided by T and the whole calibration
    suite is logged again under ``test/ts/``, with T itself as ``test/ts/temperature`` (and
    ``test/ts/ppl`` for token-level tasks). ``adaptls.train`` validates the evaluated
    weights right before testing them, so T belongs to the tested weights. Accuracy is
    unchanged by construction. Without a validate run before the test, nothing is logged.

    Args:
        n_bins: bins of the calibration suite's binned metrics.
        bounds: (T_min, T_max), the range T is searched in (a grid log-spaced over it, as
            many points as keep the default grid's spacing). If the validation NLL still
            decreases at a bound, T is that bound and a warning gives the config override
            that widens the range (``callbacks.temperature_scaling.bounds=[...]``).
    """

    def __init__(self, n_bins: int = 15, bounds: tuple[float, float] = DEFAULT_BOUNDS) -> None:
        self.n_bins = n_bins
        self.bounds = check_bounds(bounds)  # before any run: a bad value fails at build
        self.temperature: float | None = None
        self._grid: TemperatureGrid | None = None
        self._suite: CalibrationSuite | None = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._grid = TemperatureGrid(bounds=self.bounds)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any
    ) -> None:
        if trainer.state.fn != TrainerFn.VALIDATING or not isinstance(outputs, dict):
            return
        self._grid.update(outputs["logits"], outputs["targets"])

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.temperature = None
        if self._grid is None:
            log.warning("no validate run before this test: test/ts/* metrics are skipped")
            return
        self._grid.sums = _sum_ranks(pl_module, self._grid.sums)
        self._grid.count = _sum_ranks(pl_module, self._grid.count)
        self.temperature, bound = self._grid.solve()
        if bound is not None and trainer.is_global_zero:
            log.warning(_bound_advice(self.bounds, bound, self.temperature))
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
        if getattr(pl_module, "token_level", False):
            values["test/ts/ppl"] = perplexity(values["test/ts/nll"])
        # Identical on every rank (the suite is synced): see SmoothingClassifier._log_suite.
        pl_module.log_dict(values, sync_dist=True, reduce_fx="max")
        self._suite = None


def _sum_ranks(pl_module: pl.LightningModule, tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks (a no-op in one process)."""
    if pl_module.trainer.world_size == 1:
        return tensor
    return pl_module.all_gather(tensor.to(pl_module.device)).sum(dim=0).cpu()


def _bound_advice(bounds: tuple[float, float], bound: str, temperature: float) -> str:
    """What happened at a bound, and the override that searches 100x further past it."""
    t_min, t_max = bounds
    t_min, t_max = (t_min / 100, t_max) if bound == "lower" else (t_min, t_max * 100)
    return (
        f"temperature scaling: the validation NLL still decreases at the {bound} bound of "
        f"the temperature search, T = {temperature:g}; test/ts/* use that T. To search "
        f"further: callbacks.temperature_scaling.bounds=[{t_min:g},{t_max:g}] "
        f"(TemperatureScaling(bounds=...) outside adaptls.train)"
    )
