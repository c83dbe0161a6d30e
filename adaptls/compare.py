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

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.image import imread

__all__ = [
    "CompareError",
    "Comparison",
    "Group",
    "Run",
    "available_metrics",
    "compare",
    "load_runs",
    "main",
    "reliability_grid",
    "smoothing_amount",
    "to_markdown",
    "tradeoff_figure",
    "write_csv",
    "write_plots",
]

DEFAULT_METRICS = (
    "test/acc",
    "test/ece",
    "test/adaece",
    "test/nll",
    "test/brier",
    "test/ts/ece",
    "test/acc_many",
    "test/acc_medium",
    "test/acc_few",
)
DEFAULT_PLOT_METRICS = ("test/ece", "test/acc")
# Metrics whose values are fractions in [0, 1]; shown x 100 in tables and plots.
PERCENT = re.compile(r"(acc|balanced_acc|acc_\w+|confidence|ece|adaece|cw_ece|mce)")
# Higher is better for these; every other metric sorts lowest first.
HIGHER_IS_BETTER = re.compile(r"(acc|balanced_acc|acc_\w+)")
# The trade-off plot draws one line per strategy along its own hyperparameters (keys under
# this prefix), at the smoothing amount each run reports having applied.
STRATEGY_KEYS = "smoothing."
RELIABILITY_PNG = Path("plots") / "test_reliability.png"


class CompareError(ValueError):
    """Bad input to a comparison: no runs, unknown metric or key."""


class SkippedRunWarning(UserWarning):
    """A ``metrics.json`` that could not be read; the comparison goes on without it."""


@dataclass(frozen=True)
class Run:
    """One finished run, as its output directory records it."""

    path: Path  # the run's output directory
    strategy: str
    seed: Any
    metrics: dict[str, float]  # val/* and test/*; missing or non-finite values left out
    config: dict[str, Any]  # resolved config, flattened to dotted keys
    choices: dict[str, str]  # config group -> chosen option (from .hydra/hydra.yaml)
    overrides: dict[str, str] | None  # from .hydra/overrides.yaml; None if absent
    # Mean epsilon the strategy applied over training (schedules included); None if the
    # run does not report it (older runs, losses that are not soft-target CEs).
    applied_epsilon: float | None = None
    evaluation: str | None = None  # which checkpoint the metrics are from: last / best

    def value(self, key: str) -> Any:
        """The run's value of a dotted config key, a group's option, or None."""
        if key == "strategy":
            return self.strategy
        if key in self.config:
            return self.config[key]
        if key in self.choices:
            return self.choices[key]
        return (self.overrides or {}).get(key)


@dataclass(frozen=True)
class Group:
    """Runs with the same strategy and swept values; statistics over their seeds."""

    key: dict[str, Any]  # grouping key -> value
    runs: tuple[Run, ...]
    mean: dict[str, float]
    std: dict[str, float]  # sample std (ddof = 1); NaN for a single value
    count: dict[str, int]  # runs that reported each metric

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]

    def label(self, skip: Iterable[str] = (), sep: str = ", ") -> str:
        """``strategy, key=value, ...`` for the keys that have a value here."""
        skip = set(skip)
        parts = [str(self.key["strategy"])]
        parts += [
            f"{k}={v}"
            for k, v in self.key.items()
            if k != "strategy" and k not in skip and v is not None
        ]
        return sep.join(parts)


@dataclass(frozen=True)
class Comparison:
    """Groups as rows, the grouping keys and the metrics as columns."""

    keys: tuple[str, ...]  # "strategy" first, then the swept and --group-by keys
    metrics: tuple[str, ...]
    groups: tuple[Group, ...]


# ---------------------------------------------------------------------------- loading
def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run whose ``metrics.json`` lies below ``paths`` (searched recursively).

    A file that cannot be read or lacks ``test``/``config`` is skipped with a
    :class:`SkippedRunWarning` naming it. Raises :class:`CompareError` when a path does not
    exist or when no readable ``metrics.json`` is found.
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CompareError(f"no such file or directory: {', '.join(missing)}")
    files = sorted({f.resolve() for p in paths for f in _metrics_files(p)})
    runs = []
    for file in files:
        try:
            runs.append(_load_run(file))
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as err:
            warnings.warn(f"skipping {file}: {err}", SkippedRunWarning, stacklevel=2)
    if not runs:
        found = f" ({len(files)} unreadable)" if files else ""
        raise CompareError(
            f"no readable metrics.json found under {', '.join(map(str, paths))}{found}"
        )
    return runs


def _metrics_files(path: Path) -> Iterable[Path]:
    if path.is_file():
        return [path]
    return path.rglob("metrics.json")


def _load_run(file: Path) -> Run:
    record = json.loads(file.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for section in ("test", "config"):
        if not isinstance(record.get(section), dict):
            raise ValueError(f"no '{section}' section")
    run_dir = file.parent
    config = _flatten(record["config"])
    choices = _hydra_choices(run_dir / ".hydra" / "hydra.yaml")
    metrics = {
        name: float(value)
        for section in ("val", "test")
        for name, value in (record.get(section) or {}).items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }
    return Run(
        path=run_dir,
        strategy=_strategy_name(record, config, choices),
        seed=config.get("seed"),
        metrics=metrics,
        config=config,
        choices=choices,
        overrides=_overrides(run_dir / ".hydra" / "overrides.yaml"),
        applied_epsilon=_finite((record.get("strategy") or {}).get("smoothing/applied_epsilon")),
        evaluation=(record.get("evaluation") or {}).get("checkpoint"),
    )


def _finite(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return float(value) if ok else None


def _strategy_name(record: dict, config: dict[str, Any], choices: dict[str, str]) -> str:
    name = (record.get("strategy") or {}).get("name") or choices.get("smoothing")
    if name:
        return str(name)
    target = config.get("smoothing._target_")
    if not target:
        raise ValueError("no strategy name (strategy.name or config smoothing._target_)")
    return str(target).rsplit(".", 1)[-1]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            # Lists become tuples so that values can be grouped on.
            flat[dotted] = tuple(value) if isinstance(value, list) else value
    return flat


def _overrides(file: Path) -> dict[str, str] | None:
    if not file.is_file():
        return None
    out = {}
    for item in yaml.safe_load(file.read_text()) or []:
        key, sep, value = str(item).partition("=")
        if sep:  # "~key" deletions carry no value
            out[key.lstrip("+~")] = value
    return out


def _hydra_choices(file: Path) -> dict[str, str]:
    if not file.is_file():
        return {}
    choices = ((yaml.safe_load(file.read_text()) or {}).get("hydra") or {}).get("runtime", {})
    return {k: str(v) for k, v in (choices.get("choices") or {}).items() if "/" not in k}


# ---------------------------------------------------------------------------- grouping
def _is_run_specific(key: str) -> bool:
    """Keys that differ between runs without making them different experiments."""
    parts = key.split(".")
    return (
        parts[-1] == "seed"
        or parts[0] in {"paths", "hydra", "logger"}
        or parts[-1] in {"dirpath", "ckpt_path"}
        or parts[-1].endswith("dir")
    )


def grouping_keys(runs: Sequence[Run], group_by: Sequence[str] = ()) -> list[str]:
    """``strategy``, the swept keys (see the module docstring), then ``group_by``."""
    known = {k for run in runs for k in (*run.config, *run.choices, *(run.overrides or {}))}
    for key in group_by:
        if _is_run_specific(key):
            raise CompareError(
                f"cannot group by {key!r}: seeds, paths and loggers are what groups average over"
            )
        if key not in known:
            raise CompareError(
                f"unknown --group-by key {key!r}; the runs have: {', '.join(sorted(known))}"
            )

    def follows(key: str, keys: Sequence[str], among: Sequence[Run] = runs) -> bool:
        """True if ``key`` is constant within every group that ``keys`` define."""
        seen: dict[tuple, Any] = {}
        for run in among:
            group = tuple(_hashable(run.value(k)) for k in keys)
            if seen.setdefault(group, _hashable(run.value(key))) != _hashable(run.value(key)):
                return False
        return True

    keys = ["strategy", *group_by]
    override_keys = dict.fromkeys(k for run in runs for k in (run.overrides or {}))
    for key in override_keys:
        if key not in keys and not _is_run_specific(key) and not follows(key, keys):
            keys.append(key)
    hidden = sorted({k for run in runs for k in run.config} - set(keys))
    for key in hidden:
        # A key that older runs lack (added to the configs since) is no difference by itself.
        having = [run for run in runs if key in run.config]
        if not _is_run_specific(key) and not follows(key, keys, having):
            keys.append(key)
    return keys


def available_metrics(runs: Sequence[Run]) -> list[str]:
    """Every metric name reported by at least one run."""
    return sorted({name for run in runs for name in run.metrics})


def compare(
    runs: Sequence[Run],
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] = (),
    sort: str | None = None,
) -> Comparison:
    """Group ``runs`` and take mean, sample std and count of ``metrics`` over each group.

    ``metrics=None`` picks :data:`DEFAULT_METRICS` that some run reports. ``sort`` orders
    the groups best first on that metric (accuracies highest first, everything else lowest
    first; groups without it last); by default groups come in key order.
    """
    available = available_metrics(runs)
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in available]
    unknown = [m for m in [*metrics, *([sort] if sort else [])] if m not in available]
    if unknown:
        raise CompareError(
            f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    keys = grouping_keys(runs, group_by)
    members: dict[tuple, list[Run]] = {}
    for run in runs:
        members.setdefault(tuple(_hashable(run.value(k)) for k in keys), []).append(run)
    groups = [
        _group(
            dict(zip(keys, (group[0].value(k) for k in keys), strict=True)),
            group,
            {*metrics, sort} - {None},
        )
        for group in members.values()
    ]
    groups.sort(key=lambda g: tuple(_order(g.key[k], k) for k in keys))
    if sort:
        sign = -1.0 if HIGHER_IS_BETTER.fullmatch(_base(sort)) else 1.0
        groups.sort(key=lambda g: (math.isnan(g.mean[sort]), sign * g.mean[sort]))
    return Comparison(tuple(keys), tuple(metrics), tuple(groups))


def _group(key: dict[str, Any], runs: list[Run], metrics: Iterable[str]) -> Group:
    runs = sorted(runs, key=lambda r: _order(r.seed))
    seeds = [run.seed for run in runs]
    if len(set(map(_hashable, seeds))) < len(seeds):
        # The same run copied twice, or two sweeps of one config: the std would be too small.
        warnings.warn(
            f"{', '.join(f'{k}={v}' for k, v in key.items())} has repeated seeds {seeds}: "
            + ", ".join(str(run.path) for run in runs),
            UserWarning,
            stacklevel=3,
        )
    mean, std, count = {}, {}, {}
    for metric in metrics:
        values = np.array([r.metrics[metric] for r in runs if metric in r.metrics])
        count[metric] = values.size
        mean[metric] = float(values.mean()) if values.size else math.nan
        std[metric] = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return Group(key, tuple(runs), mean, std, count)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def _order(value: Any, key: str = "") -> tuple:
    """Sort key for mixed values: numbers, then strings, then missing; 'none' first."""
    if key == "strategy":
        return (value != "none", str(value))
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


# ---------------------------------------------------------------------------- output
def evaluation_note(runs: Sequence[Run]) -> str:
    """Which checkpoint the test metrics come from; a warning if the runs disagree (then
    the comparison is not fair: every strategy must be evaluated by the same rule)."""
    rules = sorted({run.evaluation or "unrecorded" for run in runs})
    if len(rules) == 1:
        what = {"last": "the last epoch", "best": "the best validation checkpoint"}
        return f"test metrics from {what.get(rules[0], rules[0] + ' checkpoints')} of every run"
    warnings.warn(
        f"runs were evaluated by different checkpoint rules ({', '.join(rules)}): "
        "the comparison is not fair",
        stacklevel=2,
    )
    return f"test metrics from mixed checkpoints ({', '.join(rules)})"


def to_markdown(comparison: Comparison) -> str:
    """A markdown table: one row per group, ``mean ± std`` per metric, ``n`` runs.

    Fractions (accuracies, calibration errors) are shown in percent, marked ``(%)`` in the
    header; a metric reported by only ``k`` of the group's ``n`` runs gets ``(k/n)``.
    """
    head = [*comparison.keys, "n", *(_title(m) for m in comparison.metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in comparison.groups:
        cells = [_cell(group.key[k]) for k in comparison.keys] + [str(group.n)]
        for metric in comparison.metrics:
            cell = _mean_std(group.mean[metric], group.std[metric], _scale(metric))
            if 0 < group.count[metric] < group.n:
                cell += f" ({group.count[metric]}/{group.n})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(comparison: Comparison, path: str | Path) -> Path:
    """One row per group: keys, ``n``, ``seeds``, then ``<metric>_mean``/``_std`` columns.

    Values are raw (fractions, not percent); an undefined std (one run) is left empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        stats = [f"{m}_{s}" for m in comparison.metrics for s in ("mean", "std")]
        writer.writerow([*comparison.keys, "n", "seeds", *stats])
        for g in comparison.groups:
            values = [v for m in comparison.metrics for v in (g.mean[m], g.std[m])]
            writer.writerow(
                [
                    *(_csv_value(g.key[k]) for k in comparison.keys),
                    g.n,
                    " ".join(map(str, g.seeds)),
                    *("" if math.isnan(v) else repr(v) for v in values),
                ]
            )
    return path


def tradeoff_figure(
    comparison: Comparison, metrics: Sequence[str] = DEFAULT_PLOT_METRICS
) -> Figure:
    """Metric against smoothing amount, one line per strategy (and other swept values).

    The amount is the mean epsilon each run applied over training, as its strategy
    reports it (``smoothing/applied_epsilon``: per-sample and per-class epsilon, feedback's
    moving epsilon and schedules included), averaged over the group's runs; the groups of
    one strategy that differ only in its own hyperparameters (``smoothing.*``) form one
    line. A strategy that applies none (none; losses that are not soft-target CEs; runs
    that do not report it) is drawn as a dashed horizontal line with its ± std band. Error
    bars are ± one std over seeds.
    """
    if not metrics:
        raise CompareError("no metric to plot: none of the plot metrics is reported by any run")
    missing = [m for m in metrics if m not in comparison.metrics]
    if missing:
        raise CompareError(
            f"plot metric(s) {', '.join(missing)} not in the comparison's metrics: "
            f"{', '.join(comparison.metrics)}"
        )
    amount_keys = [k for k in comparison.keys if k.startswith(STRATEGY_KEYS)]
    lines: dict[str, list[tuple[float | None, Group]]] = {}
    for group in comparison.groups:
        amounts = [smoothing_amount(run) for run in group.runs]
        known = [a for a in amounts if a is not None]
        x = sum(known) / len(known) if known and any(known) else None
        lines.setdefault(group.label(skip=amount_keys), []).append((x, group))

    fig = Figure(figsize=(5 * len(metrics), 4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        scale = _scale(metric)
        # Sorted by label so that a strategy keeps its colour whatever the table's order.
        for i, (label, points) in enumerate(sorted(lines.items())):
            color = f"C{i % 10}"
            if all(x is None for x, _ in points):
                mean, std = (scale * points[0][1].mean[metric], scale * points[0][1].std[metric])
                ax.axhline(mean, color=color, linestyle="--", label=label)
                if not math.isnan(std):
                    ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)
                continue
            points = sorted((p for p in points if p[0] is not None), key=lambda p: p[0])
            ax.errorbar(
                [x for x, _ in points],
                [scale * g.mean[metric] for _, g in points],
                yerr=[
                    0.0 if math.isnan(g.std[metric]) else scale * g.std[metric] for _, g in points
                ],
                marker="o",
                capsize=3,
                color=color,
                label=label,
            )
        ax.set(xlabel="smoothing applied (mean ε over training rows)", ylabel=_title(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def reliability_grid(comparison: Comparison, columns: int = 4) -> Figure:
    """Each group's test reliability diagram side by side (its lowest seed's PNG)."""
    n = len(comparison.groups)
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(4 * columns, 4.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, group in zip(axes, comparison.groups, strict=False):
        run = group.runs[0]
        image = run.path / RELIABILITY_PNG
        if image.is_file():
            ax.imshow(imread(image))
        else:
            ax.text(0.5, 0.5, f"no {RELIABILITY_PNG}", ha="center", va="center")
        title = group.label(sep="\n")
        ax.set_title(f"{title} (seed {run.seed})", fontsize="small")
        ax.set_axis_off()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig


def write_plots(
    comparison: Comparison, outdir: str | Path, metrics: Sequence[str] = DEFAULT_PLOT_METRICS
) -> list[Path]:
    """Save ``tradeoff.png`` and ``reliability.png`` into ``outdir``; return their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / "tradeoff.png", outdir / "reliability.png"]
    tradeoff_figure(comparison, metrics).savefig(paths[0], dpi=120)
    reliability_grid(comparison).savefig(paths[1], dpi=120)
    return paths


def smoothing_amount(run: Run) -> float | None:
    """How much the run smoothed: the mean epsilon its strategy reports having applied over
    training (``smoothing/applied_epsilon`` in metrics.json), None if it does not report it."""
    return run.applied_epsilon


def _base(metric: str) -> str:
    return metric.rsplit("/", 1)[-1]


def _scale(metric: str) -> float:
    return 100.0 if PERCENT.fullmatch(_base(metric)) else 1.0


def _title(metric: str) -> str:
    return f"{metric} (%)" if _scale(metric) == 100.0 else metric


def _mean_std(mean: float, std: float, scale: float) -> str:
    if math.isnan(mean):
        return "-"
    digits = 2 if scale == 100.0 else 4
    text = f"{scale * mean:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


# ---------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/compare.py``: print the table, optionally write the CSV and the plots."""
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Compare runs: mean ± std over seeds of every metrics.json below the "
        "given directories, grouped by strategy and swept keys.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="metric names (default: test/acc, test/ece, ... where reported)",
    )
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help="extra dotted config keys to group on (e.g. data.imbalance_ratio)",
    )
    parser.add_argument("--sort", metavar="METRIC", help="order groups best first on METRIC")
    parser.add_argument("--csv", metavar="FILE", help="write one row per group to FILE")
    parser.add_argument("--plot", metavar="OUTDIR", help="write tradeoff.png, reliability.png")
    parser.add_argument(
        "--plot-metrics",
        nargs="+",
        metavar="METRIC",
        help=f"y axes of the trade-off plot (default: {' '.join(DEFAULT_PLOT_METRICS)})",
    )
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _print_warning
        try:
            runs = load_runs(args.paths)
            comparison = compare(runs, args.metrics, args.group_by, args.sort)
            print(f"{len(runs)} runs; mean ± std (sample std) over seeds")
            print(evaluation_note(runs) + "\n")
            print(to_markdown(comparison))
            if args.csv:
                print(f"\nwrote {write_csv(comparison, args.csv)}")
            if args.plot:
                available = available_metrics(runs)
                plot_metrics = args.plot_metrics or [
                    m for m in DEFAULT_PLOT_METRICS if m in available
                ]
                plotted = compare(runs, plot_metrics, args.group_by)
                for path in write_plots(plotted, args.plot, plot_metrics):
                    print(f"wrote {path}")
        except CompareError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


def _print_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    print(f"warning: {message}", file=sys.stderr)
