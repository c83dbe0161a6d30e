"""Group runs by strategy and swept keys; mean, sample std and count over each group's seeds."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from adaptls.compare.load import CompareError, Run
from adaptls.run.report import GROUP_METRICS, HEADLINE_METRICS, summary_metrics

# The default columns, in this order, where runs report them (see `default_metrics`).
DEFAULT_METRICS = (
    *(f"test/{m}" for m in HEADLINE_METRICS),
    "test/ts/ece",
    *(f"test/{m}" for m in GROUP_METRICS),
)
# Higher is better for these; every other metric sorts lowest first.
HIGHER_IS_BETTER = re.compile(r"(acc|balanced_acc|acc_\w+|bleu|chrf)")


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


def default_metrics(runs: Sequence[Run]) -> list[str]:
    """The :data:`DEFAULT_METRICS` that some run's summary shows: each run's test metrics
    as :func:`adaptls.run.report.summary_metrics` picks them (``test/ppl`` for language models,
    the group accuracies for runs with more than one long-tail group), and ``test/ts/ece``
    where reported."""
    shown = {"test/ts/ece"} & set(available_metrics(runs))
    for run in runs:
        shown.update(summary_metrics(run.metrics, "test"))
    return [m for m in DEFAULT_METRICS if m in shown]


def compare(
    runs: Sequence[Run],
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] = (),
    sort: str | None = None,
) -> Comparison:
    """Group ``runs`` and take mean, sample std and count of ``metrics`` over each group.

    ``metrics=None`` picks :func:`default_metrics`. ``sort`` orders
    the groups best first on that metric (accuracies highest first, everything else lowest
    first; groups without it last); by default groups come in key order.
    """
    available = available_metrics(runs)
    if metrics is None:
        metrics = default_metrics(runs)
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
        sign = -1.0 if HIGHER_IS_BETTER.fullmatch(base_name(sort)) else 1.0
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
    # One row per run, one column per metric (NaN where a run does not report it):
    # pandas skips the NaNs, gives a NaN std for a single value and counts the reports.
    table = pd.DataFrame([r.metrics for r in runs], columns=sorted(metrics), dtype=float)
    mean, std, count = table.mean(), table.std(ddof=1), table.count()
    return Group(
        key,
        tuple(runs),
        {m: float(mean[m]) for m in table},
        {m: float(std[m]) for m in table},
        {m: int(count[m]) for m in table},
    )


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


def base_name(metric: str) -> str:
    """``test/ts/ece`` -> ``ece``."""
    return metric.rsplit("/", 1)[-1]
