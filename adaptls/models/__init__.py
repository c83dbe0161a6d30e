"""Small, honest baselines per data family: MLP (any), CNN1D (series), ResNet (images).

Every model is built as ``Model(input_shape, num_classes, **hyperparameters)`` and maps
a float batch (B, *input_shape) to logits (B, num_classes).
"""

from adaptls.models.cnn1d import CNN1D
from adaptls.models.mlp import MLP
from adaptls.models.resnet import ResNet, resnet20, resnet32

__all__ = ["CNN1D", "MLP", "ResNet", "resnet20", "resnet32"]
