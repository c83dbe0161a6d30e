"""The run's record: ``metrics.json`` and the closing table."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from adaptls.checks import atomic_write

# What a run's summary shows (the closing table here, scripts/compare.py's default columns),
# in this order, of what the run reports: the headline figures (`ppl` only token-level runs
# report, `bleu` and `chrf` only translation runs' test split), then the long-tail group
# accuracies.
HEADLINE_METRICS = ("acc", "ece", "adaece", "nll", "ppl", "brier", "bleu", "chrf")
GROUP_METRICS = ("acc_many", "acc_medium", "acc_few")


def write_metrics(
    path: Path,
    val: Mapping[str, float],
    test: Mapping[str, float],
    config: Mapping[str, Any],
    strategy: Mapping[str, Any],
    evaluated: Mapping[str, Any],
    sections: Mapping[str, Any] | None = None,
) -> None:
    """Write ``metrics.json`` atomically (a crash never leaves a half-written file).

    ``evaluated``: which weights the metrics come from, ``{"rule": "last" | "best",
    "path": checkpoint file or None, "epoch": 0-based epoch, "step": optimizer steps}``;
    recorded as ``"checkpoint"`` (the file) and ``"evaluation"`` (rule, epoch, step).
    ``sections``: further top-level sections, by name (what callbacks record, e.g.
    ``TranslationMetrics``: sacrebleu's signatures and sample translations).
    """
    record = {
        "val": _numbers(val),
        "test": _numbers(test),
        "strategy": strategy,
        "checkpoint": evaluated.get("path"),
        "evaluation": {
            "checkpoint": evaluated["rule"],
            "epoch": evaluated.get("epoch"),
            "step": evaluated.get("step"),
        },
        **dict(sections or {}),
        "config": config,
    }
    with atomic_write(path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=False, default=str)


def summary_metrics(reported: Collection[str], split: str) -> list[str]:
    """The ``<split>/<name>`` metrics a summary of a run shows, of the ``reported`` names.

    Derived from what the run reports, not from its data's name: the
    :data:`HEADLINE_METRICS` it reports (``ppl`` appears for token-level tasks), then its
    long-tail group accuracies when it reports more than one group. The metric suite
    reports a group only when the training class counts put a class in it; a run that
    reports a single group has every class in it (balanced data), and that group's
    accuracy is ``acc`` again.
    """
    headline = [f"{split}/{m}" for m in HEADLINE_METRICS if f"{split}/{m}" in reported]
    groups = [f"{split}/{m}" for m in GROUP_METRICS if f"{split}/{m}" in reported]
    return headline + (groups if len(groups) > 1 else [])


def print_table(val: Mapping[str, float], test: Mapping[str, float], title: str) -> None:
    """A small markdown table, validation and test, of the metrics
    :func:`summary_metrics` picks for either split."""
    shown = {
        m.split("/", 1)[1] for m in summary_metrics(val, "val") + summary_metrics(test, "test")
    }
    columns = [m for m in (*HEADLINE_METRICS, *GROUP_METRICS) if m in shown]
    print(f"\n{title}\n")
    print("| split | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for split, values in (("val", val), ("test", test)):
        cells = [_fmt(values.get(f"{split}/{m}")) for m in columns]
        print(f"| {split} | " + " | ".join(cells) + " |")
    print()


def calibration_verdict(test: Mapping[str, float]) -> str | None:
    """One sentence on the test set's miscalibration: its direction (over-confident: mean
    top-1 confidence above accuracy) and size in percentage points, next to the ECE."""
    conf, acc, ece = (test.get(f"test/{k}") for k in ("confidence", "acc", "ece"))
    if conf is None or acc is None or not (math.isfinite(conf) and math.isfinite(acc)):
        return None
    gap = 100.0 * (conf - acc)
    if abs(gap) < 0.5:
        direction = "about as confident as it is accurate"
    elif gap > 0:
        direction = f"over-confident by {gap:.1f} points"
    else:
        direction = f"under-confident by {-gap:.1f} points"
    text = f"Test set: the model is {direction} (mean confidence {conf:.3f}, accuracy {acc:.3f}"
    if ece is not None and math.isfinite(ece):
        text += f", ECE {100.0 * ece:.1f}%"
        if 100.0 * ece > abs(gap) + 1.0:  # "by 1.2 points ... ECE 8.4%" would read as a slip
            text += ": the gaps of the confidence bins, which do not cancel"
    return text + ")."


def print_calibration_verdict(test: Mapping[str, float]) -> None:
    verdict = calibration_verdict(test)
    if verdict:
        print(verdict + "\n")


def _fmt(value: float | None) -> str:
    """4 decimals; ``-`` where there is no value (not reported, or NaN: no rows)."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        v = float(v)
        out[k] = v if math.isfinite(v) else None
    return out
