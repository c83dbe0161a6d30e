"""A K x K matrix as a heatmap, e.g. online smoothing's soft-label matrix S."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from adaptls.plots._arrays import as_array

__all__ = ["matrix_heatmap"]


def matrix_heatmap(
    S: Any,
    title: str = "Soft labels per class",
    xlabel: str = "soft-label class",
    ylabel: str = "true class",
) -> Figure:
    """Heatmap of a 2-D matrix (row c of online smoothing's S is the soft label of class c),
    with a colorbar; cell values are written in when the matrix is at most 12 x 12."""
    matrix = as_array(S, "S", 2)
    size = min(8.0, 2.0 + 0.4 * max(matrix.shape))
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis", aspect="equal", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if max(matrix.shape) <= 30:
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
    if max(matrix.shape) <= 12:
        middle = (matrix.max() + matrix.min()) / 2
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > middle else "white",
            )
    return fig
