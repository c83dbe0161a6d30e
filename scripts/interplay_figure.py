"""One picture of experiment=interplay: accuracy and calibration of each smoothing strategy
under every combination of the other regularisers (dropout, weight decay, mixup).

    python scripts/interplay_figure.py multirun/interplay/<time> --out interplay.png

Runs are grouped as ``scripts/compare.py`` groups them; the regulariser axes are
``model.dropout``, ``optimizer.weight_decay`` and ``mix``. One column per combination (none
first, then one, two, all three regularisers), in each a marker per strategy (the mean
over seeds) with its seeds as small dots, one panel per measure: accuracy, ECE, and the
signed gap mean confidence - accuracy (above 0 over-confident, below 0 under-confident,
which ECE alone does not tell).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from adaptls.compare import compare, load_runs

REGULARISERS = (("model.dropout", "dropout"), ("optimizer.weight_decay", "wd"), ("mix", "mixup"))


def _percent(name: str) -> Callable[[dict[str, float]], float | None]:
    return lambda metrics: 100 * metrics[name] if name in metrics else None


def _gap(metrics: dict[str, float]) -> float | None:
    if "test/confidence" not in metrics or "test/acc" not in metrics:
        return None
    return 100 * (metrics["test/confidence"] - metrics["test/acc"])


# (axis title, the value of one run) per panel
MEASURES: tuple[tuple[str, Callable[[dict[str, float]], float | None]], ...] = (
    ("test accuracy (%)", _percent("test/acc")),
    ("test ECE (%)", _percent("test/ece")),
    ("confidence - accuracy (%)\n> 0 over-, < 0 under-confident", _gap),
)
COLOURS = {"none": "#555555", "uniform": "#1f77b4", "feedback": "#d62728"}


def combination(key: dict) -> tuple[bool, ...]:
    """Which regularisers a group uses (dropout > 0, weight decay > 0, a mix other than none)."""
    used = []
    for name, _ in REGULARISERS:
        value = key.get(name)
        used.append(value not in (None, "none") if name == "mix" else bool(value))
    return tuple(used)


def combination_label(used: Sequence[bool]) -> str:
    names = [short for (_, short), on in zip(REGULARISERS, used, strict=True) if on]
    return "+".join(names) if names else "none"


def interplay_figure(
    paths: Sequence[str | Path],
    measures: Sequence[tuple[str, Callable[[dict[str, float]], float | None]]] = MEASURES,
) -> Figure:
    runs = load_runs(paths)
    groups = compare(runs, ["test/acc"], group_by=[k for k, _ in REGULARISERS]).groups
    combos = sorted(
        {combination(g.key) for g in groups}, key=lambda c: (sum(c), [not x for x in c])
    )
    present = {g.key["strategy"] for g in groups}
    strategies = [n for n in COLOURS if n in present] + sorted(present - set(COLOURS))
    width = 0.8 / max(len(strategies), 1)
    fig = Figure(figsize=(11, 2.6 * len(measures)), layout="constrained")
    axes = fig.subplots(len(measures), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, measure) in zip(axes, measures, strict=True):
        for group in groups:
            x = combos.index(combination(group.key))
            s = strategies.index(group.key["strategy"])
            at = x + (s - (len(strategies) - 1) / 2) * width
            colour = COLOURS.get(group.key["strategy"])
            values = [v for v in (measure(r.metrics) for r in group.runs) if v is not None]
            if not values:
                continue
            ax.scatter([at] * len(values), values, s=10, color=colour, alpha=0.45, linewidths=0)
            label = group.key["strategy"] if x == 0 else None
            ax.scatter([at], [np.mean(values)], s=45, marker="D", color=colour, label=label)
        for x in range(1, len(combos)):
            ax.axvline(x - 0.5, color="#dddddd", linewidth=0.8)
        if measure is _gap:
            ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylabel(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: strategies.index(labels[i]))
    fig.legend(
        [handles[i] for i in order],
        [f"smoothing={labels[i]}" for i in order],
        loc="outside upper center",
        ncols=len(strategies),
    )
    axes[-1].set_xticks(range(len(combos)), [combination_label(c) for c in combos], fontsize=9)
    axes[-1].set_xlabel("other regularisers (dropout 0.2, AdamW weight decay 0.05, mixup)")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="sweep directories (searched for metrics.json)")
    parser.add_argument("--out", default="interplay.png", help="image to write")
    args = parser.parse_args(argv)
    interplay_figure(args.paths).savefig(args.out, dpi=130)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
