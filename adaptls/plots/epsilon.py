"""Per-class smoothing amounts, e.g. of class-frequency smoothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from adaptls.plots._arrays import as_array

__all__ = ["epsilon_bars"]


def epsilon_bars(
    epsilon_per_class: Any,
    class_counts: Sequence[int] | Any | None = None,
    title: str = "Smoothing per class",
    ylabel: str = "epsilon",
) -> Figure:
    """One bar per class with its epsilon; with ``class_counts``, the training count of each
    class as a line on a log-scaled right axis (head classes left when sorted by count)."""
    epsilon = as_array(epsilon_per_class, "epsilon_per_class", 1)
    classes = np.arange(epsilon.size)
    fig = Figure(figsize=(max(4.0, 0.25 * epsilon.size + 2), 3.5), layout="constrained")
    ax = fig.subplots()
    ax.bar(classes, epsilon, color="tab:purple", edgecolor="black", label=ylabel)
    ax.set(xlabel="class", ylabel=ylabel, title=title, ylim=(0, max(1e-3, 1.1 * epsilon.max())))
    if epsilon.size <= 30:
        ax.set_xticks(classes)
    if class_counts is not None:
        counts = as_array(class_counts, "class_counts", 1)
        if counts.size != epsilon.size:
            raise ValueError(
                f"class_counts must have one entry per class ({epsilon.size}), got {counts.size}"
            )
        right = ax.twinx()
        right.plot(
            classes,
            np.maximum(counts, 1),
            color="black",
            marker="o",
            markersize=3,
            label="training count",
        )
        right.set(yscale="log", ylabel="training samples")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize="small")
    return fig
