"""Reliability diagram with the confidence histogram below it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from adaptls.plots._arrays import as_array

__all__ = ["reliability_diagram"]


def reliability_diagram(bins: Mapping[str, Any], title: str = "Reliability diagram") -> Figure:
    r"""Accuracy per confidence bin against the diagonal, and how many rows each bin holds.

    Args:
        bins: per-bin ``confidence`` (mean), ``accuracy`` and ``count`` (B,) and the B + 1
            ``edges``, as returned by ``CalibrationSuite.reliability()``. Empty bins may hold
            NaN; they get no bar.
        title: the top panel's title; the ECE :math:`\sum_b \frac{n_b}{N}|acc_b - conf_b|`
            of these bins is appended.

    Top panel: one blue bar per non-empty bin (its accuracy) and one red hatched bar from
    accuracy to mean confidence (the gap: above the bar = over-confident). Bottom panel: the
    share of rows per bin, with the mean confidence and accuracy marked.
    """
    edges = as_array(bins["edges"], "bins['edges']", 1)
    count = as_array(bins["count"], "bins['count']", 1)
    accuracy = as_array(bins["accuracy"], "bins['accuracy']", 1)
    confidence = as_array(bins["confidence"], "bins['confidence']", 1)
    if not (edges.size == count.size + 1 == accuracy.size + 1 == confidence.size + 1):
        raise ValueError(
            f"bins must hold B + 1 edges and B values each; got {edges.size} edges, "
            f"{count.size} counts, {accuracy.size} accuracies, {confidence.size} confidences"
        )
    total = count.sum()
    filled = count > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    acc, conf, share = accuracy[filled], confidence[filled], count[filled] / max(total, 1)
    ece = float(np.sum(share * np.abs(acc - conf)))

    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.bar(
        left, acc, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy"
    )
    top.bar(
        left,
        conf - acc,
        bottom=acc,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"{title} (ECE {100 * ece:.2f}%)")
    top.legend(loc="upper left", fontsize="small")

    bottom.bar(
        edges[:-1],
        count / max(total, 1),
        width=np.diff(edges),
        align="edge",
        color="gray",
        edgecolor="black",
    )
    if total > 0:
        bottom.axvline(
            np.sum(count[filled] * conf) / total, color="tab:red", label="mean confidence"
        )
        bottom.axvline(
            np.sum(count[filled] * acc) / total, color="tab:blue", linestyle="--", label="accuracy"
        )
        bottom.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="confidence (top-1 probability)", ylabel="share of rows")
    return fig
