"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the official python-version archives."""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from adaptls.checks import check_bool
from adaptls.data.augment import random_crop_flip
from adaptls.data.base import TensorDataModule, collate_tuple
from adaptls.data.download import RemoteFile, fetch

CIFAR10_ARCHIVE = RemoteFile(
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"
)
CIFAR100_ARCHIVE = RemoteFile(
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4dfd3ace7ae6"
)


class CIFARDataModule(TensorDataModule):
    """Base of :class:`CIFAR10DataModule` and :class:`CIFAR100DataModule`.

    ``prepare_data`` fetches the archive into ``data_dir`` (md5-verified, cached; see
    :mod:`adaptls.data.download`); ``setup`` reads the pickled batches straight from the
    archive (nothing is extracted) into uint8 tensors (N, 3, 32, 32): 50000 train, 10000
    test. Loaders yield float32 images normalised by the standard per-channel training-set
    mean and std. With ``augment``, training batches get a random crop (padding 4, padded
    with black) and a horizontal flip, batched in torch on the training device in
    ``on_after_batch_transfer``, drawn from that device's global RNG (seeded by
    ``seed_everything``); validation and test batches are never augmented.
    """

    remote: ClassVar[RemoteFile]
    folder: ClassVar[str]
    train_members: ClassVar[tuple[str, ...]]
    test_members: ClassVar[tuple[str, ...]]
    label_key: ClassVar[bytes]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    padding: ClassVar[int] = 4

    def __init__(
        self,
        *,
        data_dir: str = "~/.cache/adaptls",
        download: bool = True,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(data_dir, (str, Path)) or not str(data_dir):
            raise ValueError(f"data_dir must be a non-empty path, got {data_dir!r}")
        self.data_dir = Path(data_dir).expanduser()
        self.download = check_bool("download", download)
        self.augment = check_bool("augment", augment)
        self.input_shape = (3, 32, 32)

    def prepare_data(self) -> None:
        fetch(self.remote, self.data_dir, download=self.download)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        path = self.data_dir / self.remote.filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: call prepare_data() before setup()")
        path = fetch(self.remote, self.data_dir, download=False)  # verifies the md5
        member = {name: f"{self.folder}/{name}" for name in self.train_members + self.test_members}
        batches = read_archive(path, list(member.values()))
        train = [batches[member[name]] for name in self.train_members]
        test = [batches[member[name]] for name in self.test_members]
        return (*self._stack(train), *self._stack(test))

    def collate_fn(self) -> NormalizeImages:
        return NormalizeImages(self.mean, self.std)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not (self.augment and self.trainer is not None and self.trainer.training):
            return batch
        images, targets, indices = batch
        fill = -torch.tensor(self.mean) / torch.tensor(self.std)  # a black pixel, normalised
        images = random_crop_flip(images, self.padding, fill.to(images))
        return images, targets, indices

    def _stack(self, batches: list[dict[bytes, Any]]) -> tuple[Tensor, Tensor]:
        images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[self.label_key], dtype=np.int64) for b in batches])
        return torch.from_numpy(images).reshape(-1, 3, 32, 32), torch.from_numpy(labels)


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10: 10 classes, 5000 training and 1000 test images each."""

    remote = CIFAR10_ARCHIVE
    folder = "cifar-10-batches-py"
    train_members = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_members = ("test_batch",)
    label_key = b"labels"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = 10


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 with its 100 fine labels: 500 training and 100 test images each."""

    remote = CIFAR100_ARCHIVE
    folder = "cifar-100-python"
    train_members = ("train",)
    test_members = ("test",)
    label_key = b"fine_labels"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = 100


class NormalizeImages:
    """Collate ``(uint8 image, label, index)`` samples into a batch ``(float32 images
    normalised per channel as (x / 255 - mean) / std, int64 labels, int64 indices)``.

    A class rather than a closure so that loader workers can pickle it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.shift = 255 * torch.tensor(mean).view(-1, 1, 1)
        self.scale = 255 * torch.tensor(std).view(-1, 1, 1)

    def __call__(self, samples: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, ...]:
        images, labels, indices = collate_tuple(samples)
        return (images.float() - self.shift) / self.scale, labels, indices


def read_archive(path: str | Path, names: Sequence[str]) -> dict[str, dict[bytes, Any]]:
    """Unpickle the members ``names`` of a CIFAR python-version ``.tar.gz``, in one pass.

    The pickles are trusted only because the archive's md5 was verified before.
    """
    wanted, found = set(names), {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                with archive.extractfile(member) as file:
                    found[name] = pickle.load(file, encoding="bytes")
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValueError(f"{path} is not a CIFAR python archive: it lacks {missing}")
    return found
