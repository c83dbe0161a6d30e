"""ResNet: He et al. 2016's CIFAR networks, option-A shortcuts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adaptls.models import ResNet, resnet20, resnet32


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper():
    # The paper's table 6: 0.27M and 0.46M. Exact values are those of option A
    # (parameter-free shortcuts); projection shortcuts would add 1x1 convs.
    assert count(resnet20((3, 32, 32), 10)) == 269_722
    assert count(resnet32((3, 32, 32), 10)) == 464_154
    assert count(ResNet((3, 32, 32), 10, depth=56)) == 853_018


def test_depth_counts_weighted_layers():
    for depth in (8, 20, 32):
        model = ResNet((3, 32, 32), 10, depth=depth)
        layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert len(layers) == depth


@pytest.mark.parametrize("input_shape", [(3, 32, 32), (1, 28, 28), (3, 17, 9), (3, 1, 1)])
def test_any_channels_and_spatial_size(input_shape):
    model = resnet20(input_shape, 100)
    assert model(torch.randn(2, *input_shape)).shape == (2, 100)


def test_shortcut_pads_channels_and_subsamples():
    """Option A: the identity path of a downsampling block is x[::2, ::2] then zeros."""
    model = resnet20((3, 32, 32), 10)
    block = model.features[3 + 3]  # stem is 3 modules, then 3 blocks of stage 1
    x = torch.randn(2, 16, 32, 32)
    identity = block._shortcut(x)
    assert identity.shape == (2, 32, 16, 16)
    torch.testing.assert_close(identity[:, 8:24], x[..., ::2, ::2])
    assert identity[:, :8].abs().sum() == 0 and identity[:, 24:].abs().sum() == 0


def test_kaiming_init_of_convolutions():
    torch.manual_seed(0)
    model = resnet20((3, 32, 32), 10)
    conv = model.features[-3].conv2  # a 64 -> 64 3x3 conv: fan_out = 576
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=2e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 21}, r"depth must be 6n \+ 2 .*got 21"),
        ({"depth": 2}, r"depth must be an int >= 8, got 2"),
        ({"input_shape": (32, 32)}, r"input_shape must be .*\(C, H, W\), got \(32, 32\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"input_shape": (3, 32, 32), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        ResNet(**args)
