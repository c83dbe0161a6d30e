"""The run's pictures: reliability diagram of the test set and the strategy's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import WandbLogger

from adaptls.plots import epsilon_bars, matrix_heatmap, reliability_diagram
from adaptls.smoothing.figures import MatrixHeatmap, PerClassBars


class RunFigures(pl.Callback):
    """Save PNGs into ``dirpath`` and log them (and a per-bin table) to W&B.

    - ``test_reliability.png``: reliability diagram and confidence histogram of the test
      set (the module's synced ``test_metrics.reliability()``), with a W&B table of per-bin
      confidence, accuracy and count;
    - the strategy's pictures, from its ``figures()`` hook (``<key>.png``, e.g.
      ``smoothing_epsilon_per_class.png`` for class-frequency smoothing, ``smoothing_S.png``
      for online smoothing).
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before the module's own hook computes and resets the metric; every rank
        # takes part in the sync, rank 0 draws.
        bins = {k: v.cpu() for k, v in pl_module.test_metrics.reliability().items()}
        if not trainer.is_global_zero:
            return
        self._emit(trainer, "test/reliability", reliability_diagram(bins, "Test reliability"))
        self._table(trainer, "test/reliability_table", bins)
        for key, fig in self._strategy_figures(pl_module).items():
            self._emit(trainer, key, fig)

    @staticmethod
    def _strategy_figures(pl_module: pl.LightningModule) -> dict[str, Figure]:
        return {
            key: draw(spec, pl_module.class_counts, key)
            for key, spec in pl_module.strategy.figures().items()
        }

    def _emit(self, trainer: pl.Trainer, key: str, fig: Figure) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.dirpath / f"{key.replace('/', '_')}.png", dpi=120)
        for logger in _wandb_loggers(trainer):
            import wandb

            logger.experiment.log({key: wandb.Image(fig)})

    @staticmethod
    def _table(trainer: pl.Trainer, key: str, bins: Mapping[str, Any]) -> None:
        for logger in _wandb_loggers(trainer):
            edges = bins["edges"].tolist()
            rows = [
                [
                    edges[b],
                    edges[b + 1],
                    *(float(bins[c][b]) for c in ("confidence", "accuracy", "count")),
                ]
                for b in range(len(edges) - 1)
            ]
            logger.log_table(key, ["lower", "upper", "confidence", "accuracy", "count"], rows)


def draw(spec: Any, class_counts: Sequence[int] | None, key: str = "figure") -> Figure:
    """A matplotlib figure from what a strategy's ``figures()`` returned under ``key``."""
    if isinstance(spec, PerClassBars):
        return epsilon_bars(spec.values, class_counts, spec.title, spec.ylabel)
    if isinstance(spec, MatrixHeatmap):
        return matrix_heatmap(spec.matrix, spec.title, spec.xlabel, spec.ylabel)
    if hasattr(spec, "savefig"):
        return spec
    raise TypeError(
        f"figures()[{key!r}] must be a PerClassBars, a MatrixHeatmap or a matplotlib Figure, "
        f"got {type(spec).__name__}"
    )


def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
