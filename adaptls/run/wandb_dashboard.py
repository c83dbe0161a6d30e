"""What a run puts on its W&B page and in the project's runs table beyond the logged curves.

- Summaries that mean something in the runs table (``define_metric``): the best
  validation NLL and ECE (min over the run's validations), the best validation accuracy
  (max), and the test figures as last logged (those of the evaluated checkpoint). The
  evaluated checkpoint's own validation figures go into the summary as
  ``evaluated/val/<metric>`` (:func:`final_summary`), beside the bests.
- The strategy as config (``strategy``: name, class, every constructor hyperparameter as the
  strategy holds it, defaults included, and its epsilon schedule), beside the resolved
  config that ``adaptls.train`` logs as hyperparameters.

The run's ``job_type`` (train, tune, study) and ``group`` (the sweep) come from
``conf/logger/wandb.yaml``; the figures from :class:`~adaptls.callbacks.figures.
ReliabilityDiagrams`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytorch_lightning.loggers import Logger, WandbLogger

from adaptls.smoothing import Strategy

#: metric (or glob) -> the summary W&B keeps for it.
SUMMARIES: dict[str, str] = {
    "val/nll": "min",
    "val/ece": "min",
    "val/acc": "max",
    "test/*": "last",
}
# Lightning's WandbLogger plots every metric against this step (its own define_metric "*"):
# a metric defined here keeps that axis.
STEP_METRIC = "trainer/global_step"


def start_dashboard(loggers: Iterable[Logger], strategy: Strategy) -> None:
    """Define the summaries and record the strategy on every started W&B run."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment
        for name, summary in SUMMARIES.items():
            run.define_metric(name, step_metric=STEP_METRIC, step_sync=True, summary=summary)
        run.config.update({"strategy": strategy_config(strategy)}, allow_val_change=True)


def strategy_config(strategy: Strategy) -> dict[str, Any]:
    """The strategy as W&B config: ``name``, ``class``, ``schedule`` and each hyperparameter
    (numbers, strings, bools and None as they are; anything else, e.g. a composed
    strategy's base, as its repr)."""
    hparams = {k: _plain(v) for k, v in strategy.hparams().items()}
    return {
        "name": strategy.name,
        "class": f"{type(strategy).__module__}.{type(strategy).__qualname__}",
        "schedule": strategy.schedule.describe(),
        **hparams,
    }


def final_summary(val: Mapping[str, float], test: Mapping[str, float]) -> dict[str, float]:
    """The closing summary of a run: the test figures, and the evaluated checkpoint's
    validation figures as ``evaluated/<name>`` (``val/<name>`` holds the best, see
    :data:`SUMMARIES`)."""
    return {**test, **{f"evaluated/{k}": v for k, v in val.items()}}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
