"""Small, honest baselines per data family: MLP (any), CNN1D (series), ResNet (images),
TextCNN (token ids), TransformerLM (token sequences), TransformerMT (translation).

Every model is built as ``Model(input_shape, num_classes, **hyperparameters)`` and maps
a batch (B, *input_shape) to logits (B, num_classes): floats, or token ids for TextCNN.
TransformerLM maps (B, T) token ids to (B, T, num_classes) next-token logits and exposes
its linear head for the fused loss (:mod:`adaptls.models.linear_head`); so does
TransformerMT, from (B, 2, L) source and decoder-input rows. Each model class
declares what it reads in ``inputs`` (:class:`~adaptls.models.inputs.ModelInputs`), which
``adaptls.train`` matches against the data before a run starts.
"""

from adaptls.models.cnn1d import CNN1D
from adaptls.models.inputs import ModelInputs
from adaptls.models.linear_head import has_linear_head
from adaptls.models.mlp import MLP
from adaptls.models.resnet import ResNet, resnet20, resnet32
from adaptls.models.text_cnn import TextCNN
from adaptls.models.transformer_lm import TransformerLM
from adaptls.models.transformer_mt import TransformerMT

__all__ = [
    "CNN1D",
    "MLP",
    "ModelInputs",
    "ResNet",
    "TextCNN",
    "TransformerLM",
    "TransformerMT",
    "has_linear_head",
    "resnet20",
    "resnet32",
]
