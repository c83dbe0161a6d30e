"""What a strategy asks to be drawn at the end of a run (its :meth:`figures` hook).

Plain data, no plotting library: :class:`adaptls.callbacks.RunFigures` draws each spec
with :mod:`adaptls.plots`, saves it as ``plots/<key>.png`` (``/`` -> ``_``) and logs it to
W&B. A strategy that needs another kind of picture returns a matplotlib ``Figure``
itself (anything with ``savefig``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: Classes a per-class picture can show legibly; strategies draw none for more.
PICTURED_CLASSES = 100


@dataclass(frozen=True)
class PerClassBars:
    """One bar per class (e.g. epsilon per class), next to the training count per class."""

    values: Tensor  # (K,)
    title: str
    ylabel: str = "epsilon"


@dataclass(frozen=True)
class MatrixHeatmap:
    """A 2-D matrix as a heatmap (e.g. online smoothing's K x K soft labels, row = class)."""

    matrix: Tensor  # (R, C)
    title: str
    xlabel: str = "soft-label class"
    ylabel: str = "true class"


FigureSpec = PerClassBars | MatrixHeatmap
