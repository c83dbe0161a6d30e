"""The comparison as text: a markdown table, a CSV file, which checkpoints were evaluated."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from adaptls.compare.group import Comparison, base_name
from adaptls.compare.load import Run

# Metrics whose values are fractions in [0, 1]; shown x 100 in tables and plots.
PERCENT = re.compile(r"(acc|balanced_acc|acc_\w+|confidence|ece|adaece|cw_ece|mce)")


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
    head = [*comparison.keys, "n", *(title(m) for m in comparison.metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in comparison.groups:
        cells = [_cell(group.key[k]) for k in comparison.keys] + [str(group.n)]
        for metric in comparison.metrics:
            cell = _mean_std(group.mean[metric], group.std[metric], scale(metric))
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
    rows = [
        {
            **{k: g.key[k] for k in comparison.keys},
            "n": g.n,
            "seeds": " ".join(map(str, g.seeds)),
            **{f"{m}_{s}": getattr(g, s)[m] for m in comparison.metrics for s in ("mean", "std")},
        }
        for g in comparison.groups
    ]
    columns = [*comparison.keys, "n", "seeds"]
    columns += [f"{m}_{s}" for m in comparison.metrics for s in ("mean", "std")]
    # Missing keys and undefined stds (NaN) become empty cells; floats keep every digit.
    frame = pd.DataFrame(rows, columns=columns)
    frame.to_csv(path, index=False, na_rep="", float_format=lambda v: repr(float(v)))
    return path


def scale(metric: str) -> float:
    return 100.0 if PERCENT.fullmatch(base_name(metric)) else 1.0


def title(metric: str) -> str:
    return f"{metric} (%)" if scale(metric) == 100.0 else metric


def _mean_std(mean: float, std: float, scale: float) -> str:
    if math.isnan(mean):
        return "-"
    digits = 2 if scale == 100.0 else 4
    text = f"{scale * mean:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
