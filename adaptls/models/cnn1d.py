"""The MNIST-1D paper's small 1D CNN (Greydanus & Kobak, "Scaling down deep learning")."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from adaptls.checks import check_int, check_num_classes
from adaptls.models._checks import check_batch, check_dropout
from adaptls.models.inputs import ModelInputs

# (kernel, stride, padding) of the three convolutions, as in the reference ConvBase.
_CONVS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


class CNN1D(nn.Module):
    """Three strided Conv1d + ReLU, flatten, (dropout), one linear layer to the logits.

    Matches ``ConvBase`` in the MNIST-1D repository (``notebooks/models.py``; the pip
    package ships no models): ``channels`` filters in every layer, kernel sizes 5, 3, 3,
    stride 2, padding 1, no pooling or normalisation, PyTorch's default initialisation.
    A length of 40 shrinks to 19, 10, 5, so the classifier sees 25 * 5 = 125 features
    and the whole network has 5,210 parameters. ``dropout`` (default 0, as in the paper)
    acts on those flattened features. Published: about 94% test accuracy on MNIST-1D
    with Adam (lr 1e-2, batch 100, a few thousand steps).

    Args:
        input_shape: (C, L) of one example, e.g. (1, 40); a bare (L,) means one channel.
        num_classes: K, the number of logits.
        channels: filters per convolution (25 in the paper).
        dropout: drop probability on the flattened conv features, in [0, 1).
    """

    #: the learning rate where ``optimizer.lr`` is null (the MNIST-1D recipe's, AdamW)
    default_lr: ClassVar[float] = 0.02

    #: what it reads (checked against the data before a run): float series
    inputs: ClassVar[ModelInputs] = ModelInputs(ranks=(1, 2), layout="(C, L) or (L,)")

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: int = 25,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_shape = self.inputs.check_shape(input_shape)
        num_classes = check_num_classes(num_classes)
        channels = check_int("channels", channels, minimum=1)
        dropout = check_dropout(dropout)
        in_channels, length = (1, *self.input_shape)[-2:]

        layers: list[nn.Module] = []
        for kernel, stride, padding in _CONVS:
            if length + 2 * padding < kernel:
                raise ValueError(
                    f"input_shape {self.input_shape} is too short for CNN1D: the length "
                    f"must be at least {kernel - 2 * padding}, got {length}"
                )
            layers += [nn.Conv1d(in_channels, channels, kernel, stride, padding), nn.ReLU()]
            in_channels, length = channels, (length + 2 * padding - kernel) // stride + 1
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels * length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *input_shape) -> logits (B, num_classes)."""
        check_batch(x, self.input_shape)
        if len(self.input_shape) == 1:
            x = x.unsqueeze(1)
        return self.classifier(self.dropout(self.features(x)))
