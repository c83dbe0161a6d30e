"""One picture of experiment=interplay: accuracy and calibration of each smoothing strategy
under every combination of the other regularisers (dropout, weight decay, mixup).

    python scripts/interplay_figure.py multirun/interplay/<time> --out interplay.png

Runs are grouped as ``scripts/compare.py`` groups them; the regulariser axes are
``model.dropout``, ``optimizer.weight_decay`` and ``mix``. One column per combination (none
first, then one, two, all three regularisers), in each a marker per strategy (the mean
over seeds) with its seeds as small dots, one panel per metric.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from adaptls.compare import compare, load_runs

REGULARISERS = (("model.dropout", "dropout"), ("optimizer.weight_decay", "wd"), ("mix", "mixup"))
METRICS = (
    ("test/acc", "test accuracy (%)"),
    ("test/ece", "test ECE (%)"),
    ("test/ts/ece", "test ECE after temperature scaling (%)"),
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
    paths: Sequence[str | Path], metrics: Sequence[tuple[str, str]] = METRICS
) -> Figure:
    comparison = compare(
        load_runs(paths), [m for m, _ in metrics], group_by=[k for k, _ in REGULARISERS]
    )
    combos = sorted(
        {combination(g.key) for g in comparison.groups}, key=lambda c: (sum(c), [not x for x in c])
    )
    strategies = list(dict.fromkeys(g.key["strategy"] for g in comparison.groups))
    width = 0.8 / max(len(strategies), 1)
    fig = Figure(figsize=(10, 2.6 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (metric, title) in zip(axes, metrics, strict=True):
        for group in comparison.groups:
            x = combos.index(combination(group.key))
            s = strategies.index(group.key["strategy"])
            at = x + (s - (len(strategies) - 1) / 2) * width
            colour = COLOURS.get(group.key["strategy"])
            seeds = [100 * r.metrics[metric] for r in group.runs if metric in r.metrics]
            ax.scatter([at] * len(seeds), seeds, s=10, color=colour, alpha=0.45, linewidths=0)
            ax.scatter(
                [at],
                [100 * group.mean[metric]],
                s=45,
                marker="D",
                color=colour,
                label=group.key["strategy"] if x == 0 else None,
            )
        for x in range(1, len(combos)):
            ax.axvline(x - 0.5, color="#dddddd", linewidth=0.8)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="smoothing", ncols=len(strategies), loc="lower left", fontsize=8)
    axes[-1].set_xticks(range(len(combos)), [combination_label(c) for c in combos])
    axes[-1].set_xlabel("other regularisers (dropout 0.2, AdamW weight decay, mixup)")
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
