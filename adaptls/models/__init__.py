"""Small, honest baselines per data family: MLP (any), CNN1D (series), ResNet (images),
TextCNN (token ids).

Every model is built as ``Model(input_shape, num_classes, **hyperparameters)`` and maps
a batch (B, *input_shape) to logits (B, num_classes): floats, or token ids for TextCNN.
"""

from adaptls.models.cnn1d import CNN1D
from adaptls.models.mlp import MLP
from adaptls.models.resnet import ResNet, resnet20, resnet32
from adaptls.models.text_cnn import TextCNN

__all__ = ["CNN1D", "MLP", "ResNet", "TextCNN", "resnet20", "resnet32"]
