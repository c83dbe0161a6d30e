"""Plots: each writes a PNG and holds the artists it promises."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer
from matplotlib.image import AxesImage

from adaptls.metrics import CalibrationSuite
from adaptls.plots import epsilon_bars, matrix_heatmap, reliability_diagram


def bar_containers(ax):
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def saved_png(fig, path):
    fig.savefig(path)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image


def test_reliability_diagram(tmp_path):
    generator = torch.Generator().manual_seed(0)
    suite = CalibrationSuite(5)
    suite.update(3 * torch.randn(500, 5, generator=generator), torch.randint(0, 5, (500,)))
    bins = suite.reliability()
    filled = int((bins["count"] > 0).sum())
    assert 0 < filled < 15  # some bins are empty (confidence >= 1/5): they get no bar

    fig = reliability_diagram(bins, title="test")
    saved_png(fig, tmp_path / "reliability.png")
    top, bottom = fig.axes
    accuracy, gap = bar_containers(top)
    assert len(accuracy) == len(gap) == filled
    heights = [bar.get_height() for bar in accuracy]
    np.testing.assert_allclose(heights, bins["accuracy"][bins["count"] > 0].numpy())
    assert len(bar_containers(bottom)[0]) == 15
    ece = 100 * float(suite.compute()["ece"])
    assert top.get_title() == f"test (ECE {ece:.2f}%)"
    assert len(top.lines) == 1  # the diagonal


def test_reliability_diagram_rejects_mismatched_bins():
    bins = {"edges": np.linspace(0, 1, 16), "count": np.ones(15)}
    bins |= {"accuracy": np.ones(14), "confidence": np.ones(15)}
    with pytest.raises(ValueError, match="B \\+ 1 edges and B values"):
        reliability_diagram(bins)


def test_epsilon_bars(tmp_path):
    epsilon = torch.linspace(0.3, 0.0, 10)
    plain = epsilon_bars(epsilon)
    saved_png(plain, tmp_path / "epsilon.png")
    (bars,) = bar_containers(plain.axes[0])
    assert len(bars) == 10
    np.testing.assert_allclose([b.get_height() for b in bars], epsilon.numpy(), rtol=1e-6)

    counts = [5000, 2000, 900, 400, 200, 90, 40, 20, 10, 5]
    with_counts = epsilon_bars(epsilon.tolist(), counts)
    saved_png(with_counts, tmp_path / "epsilon_counts.png")
    left, right = with_counts.axes
    assert len(bar_containers(left)[0]) == 10
    assert right.get_yscale() == "log"
    np.testing.assert_array_equal(right.lines[0].get_ydata(), counts)
    with pytest.raises(ValueError, match=r"one entry per class \(10\)"):
        epsilon_bars(epsilon, counts[:3])


def test_matrix_heatmap(tmp_path):
    matrix = torch.softmax(torch.randn(6, 6), dim=-1)
    fig = matrix_heatmap(matrix, title="S")
    saved_png(fig, tmp_path / "heatmap.png")
    ax, colorbar = fig.axes
    assert colorbar.get_label() == "<colorbar>"
    (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    np.testing.assert_allclose(image.get_array(), matrix.numpy(), rtol=1e-6)
    assert ax.get_title() == "S" and len(ax.texts) == 36
    big = matrix_heatmap(np.eye(40))
    assert len(big.axes[0].texts) == 0  # too many cells to label
    with pytest.raises(ValueError, match="2-D"):
        matrix_heatmap(np.ones(3))
