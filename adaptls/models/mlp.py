"""Multilayer perceptron on the flattened input: the weakest honest baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from adaptls.checks import check_int, check_num_classes
from adaptls.models._checks import check_batch, check_dropout
from adaptls.models.inputs import ModelInputs


class MLP(nn.Module):
    """flatten -> [Linear -> ReLU -> Dropout] per hidden width -> Linear to logits.

    ``hidden=()`` gives multinomial logistic regression. On MNIST-1D the paper's MLP
    reaches about 68% test accuracy (the CNN 94%): a floor, not a contender.

    Args:
        input_shape: shape of one example, any rank; it is flattened.
        num_classes: K, the number of logits.
        hidden: widths of the hidden layers, in order.
        dropout: drop probability after every hidden ReLU, in [0, 1).
    """

    #: the learning rate where ``optimizer.lr`` is null (the MNIST-1D recipe's, AdamW)
    default_lr: ClassVar[float] = 0.02

    #: what it reads (checked against the data before a run): float features of any shape
    inputs: ClassVar[ModelInputs] = ModelInputs(ranks=tuple(range(1, 9)), layout="(any rank)")

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_shape = self.inputs.check_shape(input_shape)
        num_classes = check_num_classes(num_classes)
        if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a list of positive ints, got {hidden!r}")
        widths = [check_int(f"hidden[{i}]", h, minimum=1) for i, h in enumerate(hidden)]
        dropout = check_dropout(dropout)

        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(self.input_shape)
        for width in widths:
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(dropout)]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *input_shape) -> logits (B, num_classes)."""
        check_batch(x, self.input_shape)
        return self.net(x)
