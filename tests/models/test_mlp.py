"""MLP: flatten, hidden ReLU layers, linear head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptls.models import MLP


def test_default_layers_and_parameter_count():
    model = MLP((1, 40), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 256), (256, 256), (256, 10)]
    assert sum(p.numel() for p in model.parameters()) == 40 * 256 + 256 + 256 * 256 + 256 + 2570


@pytest.mark.parametrize("input_shape", [(40,), (1, 40), (3, 8, 8)])
def test_flattens_any_rank(input_shape):
    model = MLP(input_shape, 5, hidden=[16])
    assert model(torch.randn(4, *input_shape)).shape == (4, 5)


def test_no_hidden_layers_is_logistic_regression():
    model = MLP((1, 40), 10, hidden=[])
    assert [type(m) for m in model.net] == [nn.Flatten, nn.Linear]


@pytest.mark.parametrize(
    ("hidden", "error", "message"),
    [
        ([256, 0], ValueError, r"hidden\[1\] must be an int >= 1, got 0"),
        ([64.0], ValueError, r"hidden\[0\] must be an int >= 1, got 64.0"),
        ([True], ValueError, r"hidden\[0\] must be an int >= 1, got True"),
        (256, TypeError, r"hidden must be a list of positive ints, got 256"),
        ("256", TypeError, r"hidden must be a list of positive ints, got '256'"),
    ],
)
def test_bad_hidden(hidden, error, message):
    with pytest.raises(error, match=message):
        MLP((40,), 10, hidden=hidden)


def test_empty_input_shape_is_rejected():
    with pytest.raises(ValueError, match=r"input_shape must be .*got \(\)"):
        MLP((), 10)
