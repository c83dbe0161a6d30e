"""The run's record: ``metrics.json`` and the closing table."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TABLE_METRICS = ("acc", "ece", "nll", "brier", "adaece")


def write_metrics(
    path: Path,
    val: Mapping[str, float],
    test: Mapping[str, float],
    config: Mapping[str, Any],
    strategy: Mapping[str, Any],
    checkpoint: str | None,
) -> None:
    """Write ``metrics.json`` atomically (a crash never leaves a half-written file)."""
    record = {
        "val": _numbers(val),
        "test": _numbers(test),
        "strategy": strategy,
        "checkpoint": checkpoint,
        "config": config,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def print_table(val: Mapping[str, float], test: Mapping[str, float], title: str) -> None:
    """A small markdown table of the headline metrics, validation and test."""
    print(f"\n{title}\n")
    print("| split | " + " | ".join(TABLE_METRICS) + " |")
    print("|---" * (len(TABLE_METRICS) + 1) + "|")
    for split, values in (("val", val), ("test", test)):
        cells = [_fmt(values.get(f"{split}/{m}")) for m in TABLE_METRICS]
        print(f"| {split} | " + " | ".join(cells) + " |")
    print()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        v = float(v)
        out[k] = v if math.isfinite(v) else None
    return out
