"""Compare runs: read every ``metrics.json`` below some directories, group, summarise, plot.

    python scripts/compare.py multirun/train/2024-05-01_12-00-00 --sort test/ece --plot figs

A *group* is the set of runs that share the strategy name and the value of every swept
key; within a group runs differ only in ``seed``, so the group's row holds, per metric,
the mean and the sample standard deviation (ddof = 1) over its runs, and ``n``, their
number. A key is swept when its value differs between runs:

- keys named in the runs' ``.hydra/overrides.yaml`` (``smoothing.epsilon=0.2``,
  ``data=mnist1d_lt``: a config group's value is the option chosen);
- any other resolved config value that differs *within* those groups, so runs that differ
  in something not on their command line are never averaged together (a key that some
  runs lack, because it was added to the configs after they ran, counts only if the runs
  that have it disagree).

A swept key whose value follows from the strategy alone (``smoothing.epsilon`` when only
``uniform`` has one) adds no column. Seeds, paths and loggers never define a group.
"""

from adaptls.compare.cli import main
from adaptls.compare.group import (
    DEFAULT_METRICS,
    Comparison,
    Group,
    available_metrics,
    compare,
    default_metrics,
    grouping_keys,
)
from adaptls.compare.load import CompareError, Run, SkippedRunWarning, load_runs
from adaptls.compare.output import evaluation_note, to_markdown, write_csv
from adaptls.compare.plots import (
    DEFAULT_PLOT_METRICS,
    RELIABILITY_PNG,
    reliability_grid,
    smoothing_amount,
    tradeoff_figure,
    write_plots,
)

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_PLOT_METRICS",
    "RELIABILITY_PNG",
    "CompareError",
    "Comparison",
    "Group",
    "Run",
    "SkippedRunWarning",
    "available_metrics",
    "compare",
    "default_metrics",
    "evaluation_note",
    "grouping_keys",
    "load_runs",
    "main",
    "reliability_grid",
    "smoothing_amount",
    "to_markdown",
    "tradeoff_figure",
    "write_csv",
    "write_plots",
]
