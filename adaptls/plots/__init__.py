"""Matplotlib figures for runs: reliability diagram, per-class epsilon bars, K x K heatmap.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing
needs a display or touches the global backend; save with ``fig.savefig("x.png")``.
"""

from adaptls.plots.epsilon import epsilon_bars
from adaptls.plots.heatmap import matrix_heatmap
from adaptls.plots.reliability import reliability_diagram

__all__ = ["epsilon_bars", "matrix_heatmap", "reliability_diagram"]
