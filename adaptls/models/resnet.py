"""The CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", section 4.2)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from adaptls.checks import check_int, check_num_classes
from adaptls.models._checks import check_batch, check_dropout
from adaptls.models.inputs import ModelInputs

_WIDTHS = (16, 32, 64)


class ResNet(nn.Module):
    """CIFAR ResNet of depth 6n + 2: a 3x3 stem, three stages of n basic blocks, a head.

    Stem: conv3x3(C -> 16) - BN - ReLU. Stages: n blocks each at 16, 32, 64 channels;
    the first block of stages 2 and 3 halves the spatial size with stride 2. Head:
    global average pooling (adaptive, so any H x W works), dropout, linear. Shortcuts
    are option A of the paper (parameter-free: subsample by 2 and zero-pad the new
    channels), which is what its CIFAR experiments and the usual 0.27M / 0.46M
    parameter counts of ResNet-20 / ResNet-32 use. Convolutions use Kaiming-normal
    initialisation (fan_out, ReLU gain), BatchNorm starts at weight 1, bias 0; the
    linear layer keeps PyTorch's default.

    Args:
        input_shape: (C, H, W) of one example, e.g. (3, 32, 32).
        num_classes: K, the number of logits.
        depth: 6n + 2 with n >= 1: 20, 32, 44, 56, 110, ...
        dropout: drop probability on the pooled features before the linear layer.
    """

    #: the learning rate where ``optimizer.lr`` is null (AdamW; the CIFAR recipes use SGD)
    default_lr: ClassVar[float] = 0.02

    #: what it reads (checked against the data before a run): float images
    inputs: ClassVar[ModelInputs] = ModelInputs(ranks=(3,), layout="(C, H, W)")

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 20,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_shape = self.inputs.check_shape(input_shape)
        num_classes = check_num_classes(num_classes)
        depth = check_int("depth", depth, minimum=8)
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        dropout = check_dropout(dropout)

        blocks: list[nn.Module] = []
        in_planes = _WIDTHS[0]
        for stage, planes in enumerate(_WIDTHS):
            for i in range((depth - 2) // 6):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.features = nn.Sequential(
            nn.Conv2d(self.input_shape[0], _WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(_WIDTHS[0]),
            nn.ReLU(inplace=True),
            *blocks,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        check_batch(x, self.input_shape)
        return self.classifier(self.dropout(self.features(x)))


def resnet20(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> ResNet:
    """ResNet-20 (n = 3), about 0.27M parameters for 10 classes."""
    return ResNet(input_shape, num_classes, depth=20, dropout=dropout)


def resnet32(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> ResNet:
    """ResNet-32 (n = 5), about 0.46M parameters for 10 classes."""
    return ResNet(input_shape, num_classes, depth=32, dropout=dropout)


class _BasicBlock(nn.Module):
    """relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)), option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra_planes = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x), inplace=True)

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            # x[..., ::2, ::2] has ceil(H/2) rows, as does a stride-2, padding-1 3x3 conv.
            x = x[..., :: self.stride, :: self.stride]
        if self.extra_planes:
            half = self.extra_planes // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_planes - half))
        return x
