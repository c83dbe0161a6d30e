"""Plot how each run's smoothing amount moved during training, grouped like compare.py.

    python scripts/epsilon_trajectories.py SWEEP_DIR... --out trajectories.png

Reads the ``smoothing/epsilon`` a strategy logs at the logger's steps (``logger=csv``
writes it to ``<run>/csv/version_*/metrics.csv``), takes its last value in each epoch, and
draws one line per group (mean over seeds, band = min..max). That value is the epsilon
applied, the schedule's factor s(epoch) included (``SmoothingStrategy.log_values``), so a
uniform run with ``smoothing.schedule=cosine`` follows its schedule and a constant one is
flat. Only uniform, online, self_distill and feedback log ``smoothing/epsilon``; groups
whose runs log none (class_frequency, confidence, the calibration losses) get no line.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from adaptls.compare import compare, load_runs

COLUMN = "smoothing/epsilon"


def epsilon_by_epoch(run_dir: Path) -> dict[int, float]:
    """The last logged ``smoothing/epsilon`` of every epoch of one run (empty if none)."""
    values: dict[int, float] = {}
    for file in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with open(file, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(COLUMN) not in (None, "") and row.get("epoch") not in (None, ""):
                    values[int(float(row["epoch"]))] = float(row[COLUMN])
    return values


def trajectories_figure(paths: list[str]) -> Figure:
    comparison = compare(load_runs(paths))
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for group in comparison.groups:
        label = ", ".join(f"{v}" for v in group.key.values())
        curves = [epsilon_by_epoch(run.path) for run in group.runs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        epochs = sorted(set().union(*curves))
        table = defaultdict(list)
        for curve in curves:
            for e in epochs:
                if e in curve:
                    table[e].append(curve[e])
        mean = np.array([np.mean(table[e]) for e in epochs])
        low = np.array([np.min(table[e]) for e in epochs])
        high = np.array([np.max(table[e]) for e in epochs])
        (line,) = ax.plot(epochs, mean, label=f"{label} (n={len(curves)})")
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
    ax.set(
        xlabel="epoch",
        ylabel="epsilon (last step of the epoch)",
        title="Smoothing amount during training",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run or sweep directories")
    parser.add_argument("--out", default="epsilon_trajectories.png")
    args = parser.parse_args()
    trajectories_figure(args.paths).savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
