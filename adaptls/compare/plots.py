"""The comparison as pictures: metric against applied smoothing, reliability diagrams."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.image import imread

from adaptls.compare.group import Comparison, Group
from adaptls.compare.load import CompareError, Run
from adaptls.compare.output import scale, title

DEFAULT_PLOT_METRICS = ("test/ece", "test/acc")
# The trade-off plot draws one line per strategy along its own hyperparameters (keys under
# this prefix), at the smoothing amount each run reports having applied.
STRATEGY_KEYS = "smoothing."
# What the RunFigures callback writes into a run's directory.
RELIABILITY_PNG = Path("plots") / "test_reliability.png"


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
        factor = scale(metric)
        # Sorted by label so that a strategy keeps its colour whatever the table's order.
        for i, (label, points) in enumerate(sorted(lines.items())):
            color = f"C{i % 10}"
            if all(x is None for x, _ in points):
                mean, std = (factor * points[0][1].mean[metric], factor * points[0][1].std[metric])
                ax.axhline(mean, color=color, linestyle="--", label=label)
                if not math.isnan(std):
                    ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)
                continue
            points = sorted((p for p in points if p[0] is not None), key=lambda p: p[0])
            ax.errorbar(
                [x for x, _ in points],
                [factor * g.mean[metric] for _, g in points],
                yerr=[
                    0.0 if math.isnan(g.std[metric]) else factor * g.std[metric] for _, g in points
                ],
                marker="o",
                capsize=3,
                color=color,
                label=label,
            )
        ax.set(xlabel="smoothing applied (mean ε over training rows)", ylabel=title(metric))
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
        label = group.label(sep="\n")
        ax.set_title(f"{label} (seed {run.seed})", fontsize="small")
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
