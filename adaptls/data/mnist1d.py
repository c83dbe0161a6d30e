"""MNIST-1D (Greydanus & Kobak 2020), generated locally: no file, no network."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adaptls.checks import check_choice, check_int
from adaptls.data.base import TensorDataModule
from adaptls.data.split import stratified_split


class MNIST1DDataModule(TensorDataModule):
    """MNIST-1D: 10 classes of length-40 series, the published 4000 train / 1000 test split.

    Built in about two seconds by ``mnist1d.data.make_dataset`` with the package's default
    arguments; ``dataset_seed = 42`` (the package default) gives the published benchmark,
    another value a different draw of the same distribution. ``seed`` drives only the
    validation split, long-tail subsampling and shuffling. Inputs have shape (1, 40) (one
    channel, for 1D convolutions), globally standardised by the generator.

    ``val_source``: ``"holdout"`` (default) holds ``val_fraction`` of the 4000 training
    series out for validation; ``"fresh"`` trains on all 4000, as the paper does, and
    validates on an independent draw of the same generator (``dataset_seed + 1``):
    ``val_fraction * 4000`` series, stratified, from that draw's training split.

    ``make_dataset`` reseeds Python's and NumPy's global RNGs; their states are restored
    afterwards so that generating the data does not change anything else in the run.
    ``mnist1d.data.get_dataset`` is not used: it reads and writes a pickle in the working
    directory and may try to download one.
    """

    def __init__(
        self,
        *,
        dataset_seed: int = 42,
        val_source: str = "holdout",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_seed = check_int("dataset_seed", dataset_seed, minimum=0)
        self.val_source = check_choice("val_source", val_source, ("holdout", "fresh"))
        self.num_classes = 10
        self.input_shape = (1, 40)

    def load_validation(self, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        if self.val_source == "holdout":
            return None
        data = generate_mnist1d(self.dataset_seed + 1)
        y = torch.from_numpy(data["y"]).long()
        _, val = stratified_split(y, self.val_fraction, generator)
        return torch.from_numpy(data["x"][val.numpy()]).float().unsqueeze(1), y[val]

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        data = generate_mnist1d(self.dataset_seed)
        return (
            torch.from_numpy(data["x"]).float().unsqueeze(1),
            torch.from_numpy(data["y"]).long(),
            torch.from_numpy(data["x_test"]).float().unsqueeze(1),
            torch.from_numpy(data["y_test"]).long(),
        )


def generate_mnist1d(dataset_seed: int = 42) -> dict[str, np.ndarray]:
    """``make_dataset`` with the default arguments and ``seed=dataset_seed``, global RNGs
    left as they were. Keys ``x`` (4000, 40), ``y`` (4000,), ``x_test``, ``y_test``."""
    # Imported here: mnist1d pulls in matplotlib.pyplot and requests.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = dataset_seed
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {key: data[key] for key in ("x", "y", "x_test", "y_test")}
