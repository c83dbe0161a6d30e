"""A Gaussian mixture with a known, tunable difficulty."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adaptls.checks import check_int, check_real
from adaptls.data.base import TensorDataModule


class SyntheticDataModule(TensorDataModule):
    """K isotropic unit-variance Gaussians in ``dim`` dimensions, balanced classes.

    Class means are ``separation * v_c`` with v_c random unit vectors, so two classes lie
    about ``separation * sqrt(2)`` apart when ``dim`` is large (a pairwise Bayes error of
    about ``Phi(-separation / sqrt(2))``). ``x = mu_y + N(0, I)``. Means, training and test
    samples all come from one generator seeded by ``seed``. Inputs have shape (dim,).

    The ``num_train`` argument is the number of training samples generated; the attribute
    ``num_train`` (every datamodule's) is what is left for training after the validation
    hold-out and any long-tail subsampling.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        dim: int = 20,
        separation: float = 2.5,
        num_train: int = 4000,
        num_test: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.dim = check_int("dim", dim, minimum=1)
        self.separation = check_real("separation", separation, minimum=0.0)
        # Every class needs at least 2 training samples: one may go to validation.
        self.num_train_generated = check_int("num_train", num_train, minimum=2 * self.num_classes)
        self.num_test = check_int("num_test", num_test, minimum=self.num_classes)
        self.input_shape = (self.dim,)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        directions = torch.randn(self.num_classes, self.dim, generator=generator)
        means = self.separation * directions / directions.norm(dim=1, keepdim=True)

        def sample(n: int) -> tuple[Tensor, Tensor]:
            y = torch.arange(n) % self.num_classes
            y = y[torch.randperm(n, generator=generator)]
            return means[y] + torch.randn(n, self.dim, generator=generator), y

        return (*sample(self.num_train_generated), *sample(self.num_test))
