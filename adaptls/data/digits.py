"""scikit-learn's handwritten digits (bundled with the package: no network)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.data.base import TensorDataModule
from adaptls.data.split import stratified_split

TEST_FRACTION = 0.2
# The train/test split is fixed (not ``seed``) so that every run is tested on the same images.
TEST_SPLIT_SEED = 0


class DigitsDataModule(TensorDataModule):
    """1797 8x8 grey-level digits, 10 classes, pixels scaled from [0, 16] to [0, 1].

    A fixed stratified 80/20 train/test split (1438 / 359); validation is then held out of
    the training part. Inputs are flat, shape (64,), the natural input of an MLP.
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.num_classes = 10
        self.input_shape = (64,)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.data).float() / 16.0
        y = torch.from_numpy(digits.target).long()
        generator = torch.Generator().manual_seed(TEST_SPLIT_SEED)
        train, test = stratified_split(y, TEST_FRACTION, generator)
        return x[train], y[train], x[test], y[test]
