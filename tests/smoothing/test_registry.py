"""The registry and what the base class reads from a strategy's definition: its name,
its hyperparameters (from the constructor) and its pictures (the figures() hook)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from matplotlib.figure import Figure

from adaptls.callbacks.figures import draw
from adaptls.smoothing import STRATEGIES, ClassFrequencySmoothing, OnlineSmoothing
from adaptls.smoothing.base import SmoothingStrategy, SoftTarget, constructor_hyperparameters
from adaptls.smoothing.figures import MatrixHeatmap, PerClassBars


class Parent(SmoothingStrategy, register=False):
    def __init__(self, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def smoothing(self, logits, targets, indices=None):
        return SoftTarget(self.epsilon)


class Child(Parent, register=False):
    def __init__(self, width: int = 3, *, epsilon: float = 0.2, **kwargs: Any) -> None:
        super().__init__(epsilon=epsilon, **kwargs)
        self.width = width


class Forgetful(Parent, register=False):
    def __init__(self, gain: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)


def test_the_package_registers_all_of_its_strategies():
    assert len(STRATEGIES) >= 15
    assert all(cls.__module__.startswith("adaptls.smoothing.") for cls in STRATEGIES.values())
    with pytest.raises(TypeError):
        STRATEGIES["x"] = Parent  # read-only view


def test_a_named_subclass_registers_itself_and_names_are_unique():
    class Fresh(Parent):
        name = "registry_test_fresh"

    try:
        assert STRATEGIES["registry_test_fresh"] is Fresh
        with pytest.raises(ValueError, match=r"'registry_test_fresh' is taken by .*Fresh"):

            class Clash(Parent):
                name = "registry_test_fresh"

        with pytest.raises(TypeError, match=r"name must be an identifier.*'bad name'"):

            class Bad(Parent):
                name = "bad name"

    finally:
        from adaptls.smoothing._registry import _REGISTRY

        _REGISTRY.pop("registry_test_fresh", None)
    assert "parent" not in STRATEGIES and "registry_test_fresh" not in STRATEGIES


def test_hyperparameters_come_from_every_constructor_up_the_hierarchy():
    assert constructor_hyperparameters(Child) == ["width", "epsilon"]
    child = Child(width=5, schedule="cosine")
    assert child.hparams() == {"width": 5, "epsilon": 0.2}  # ignore_index, schedule: common
    assert "width=5, epsilon=0.2" in repr(child)
    assert type(child)(**child.hparams()).hparams() == child.hparams()


def test_a_hyperparameter_kept_under_another_name_is_named():
    with pytest.raises(
        AttributeError, match=r"Forgetful takes the hyperparameter 'gain'.*self\.gain"
    ):
        Forgetful(gain=2.0).hparams()


def test_figures_are_drawn_from_the_hook():
    strategy = ClassFrequencySmoothing()
    assert strategy.figures() == {}  # nothing to draw before setup
    strategy.setup(3, [30, 20, 10])
    (key, spec), *_ = strategy.figures().items()
    assert key == "smoothing/epsilon_per_class" and isinstance(spec, PerClassBars)
    fig = draw(spec, [30, 20, 10], key)
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "Epsilon per class"

    online = OnlineSmoothing()
    online.setup(4)
    spec = online.figures()["smoothing/S"]
    assert isinstance(spec, MatrixHeatmap) and spec.matrix.shape == (4, 4)
    assert isinstance(draw(spec, None), Figure)
    custom = Figure()
    assert draw(custom, None) is custom
    with pytest.raises(TypeError, match=r"figures\(\)\['smoothing/x'\] must be .*got dict"):
        draw({"values": torch.zeros(3)}, None, "smoothing/x")
