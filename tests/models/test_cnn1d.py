"""CNN1D: the MNIST-1D paper's ConvBase, layer for layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptls.models import CNN1D


def test_matches_the_papers_convbase():
    model = CNN1D((1, 40), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 25), (25, 25), (25, 25)]
    assert [c.kernel_size for c in convs] == [(5,), (3,), (3,)]
    assert all(c.stride == (2,) and c.padding == (1,) for c in convs)
    # 40 -> 19 -> 10 -> 5 positions, 25 channels each: 125 features, 5,210 parameters.
    assert model.classifier.in_features == 125
    assert sum(p.numel() for p in model.parameters()) == 5210


@pytest.mark.parametrize(
    ("input_shape", "features"),
    [((1, 40), 25 * 5), ((40,), 25 * 5), ((3, 40), 25 * 5), ((1, 3), 25 * 1), ((2, 100), 25 * 13)],
)
def test_any_channels_and_length(input_shape, features):
    model = CNN1D(input_shape, 4)
    assert model.classifier.in_features == features
    assert model(torch.randn(2, *input_shape)).shape == (2, 4)


def test_bare_length_means_one_channel():
    with_channel, bare = CNN1D((1, 40), 10), CNN1D((40,), 10)
    bare.load_state_dict(with_channel.state_dict())
    x = torch.randn(3, 40)
    torch.testing.assert_close(bare(x), with_channel(x.unsqueeze(1)))


def test_channels_sets_the_width():
    model = CNN1D((1, 40), 10, channels=8)
    assert model.classifier.in_features == 8 * 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 2)}, r"too short for CNN1D: the length must be at least 3, got 2"),
        (
            {"input_shape": (1, 1, 40)},
            r"input_shape must be .*\(C, L\) or \(L,\), got \(1, 1, 40\)",
        ),
        ({"input_shape": (0, 40)}, r"input_shape must be .*got \(0, 40\)"),
        ({"channels": 0}, r"channels must be an int >= 1, got 0"),
        ({"channels": 2.5}, r"channels must be an int >= 1, got 2.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"input_shape": (1, 40), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        CNN1D(**args)


def test_input_shape_must_be_a_sequence():
    with pytest.raises(TypeError, match=r"input_shape must be .*got '1, 40'"):
        CNN1D("1, 40", 10)
