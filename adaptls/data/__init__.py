"""LightningDataModules over in-memory tensors, with long-tailed variants.

Every classification datamodule yields batches ``(inputs, targets int64, indices int64)``
(inputs float32, or int64 right-padded token ids for text classification:
:class:`TextClassificationDataModule`; language modelling: int64 token blocks, see
:mod:`adaptls.data.text_lm`) and,
after ``prepare_data()`` + ``setup()``, knows ``num_classes``, ``class_counts`` (training
split), ``input_shape`` and ``num_train``. See :class:`TensorDataModule`.
"""

from adaptls.data.base import TensorDataModule
from adaptls.data.cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule
from adaptls.data.digits import DigitsDataModule
from adaptls.data.long_tail import long_tail_counts, long_tail_subsample
from adaptls.data.mnist1d import MNIST1DDataModule
from adaptls.data.split import stratified_split
from adaptls.data.synthetic import SyntheticDataModule
from adaptls.data.text_cls import TextClassificationDataModule
from adaptls.data.text_lm import TextLMDataModule
from adaptls.data.text_mt import TextMTDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFARDataModule",
    "DigitsDataModule",
    "MNIST1DDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
    "TextClassificationDataModule",
    "TextLMDataModule",
    "TextMTDataModule",
    "long_tail_counts",
    "long_tail_subsample",
    "stratified_split",
]
