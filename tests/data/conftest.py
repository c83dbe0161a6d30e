"""Tiny CIFAR archives in the real python-version format, built in a temporary folder.
The translation archives' builders are in mt_archives.py (this folder is put on the path)."""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from adaptls.data.download import RemoteFile

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _member(archive: tarfile.TarFile, name: str, content: dict) -> None:
    data = pickle.dumps(content)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def make_cifar_archive(
    path: Path, *, cifar100: bool = False, per_class_train: int = 10, per_class_test: int = 2
) -> RemoteFile:
    """Write a CIFAR-10 (or -100) style ``.tar.gz`` with random images at ``path``.

    Training images of class c are spread over the five CIFAR-10 batches; every image's
    first pixel value is its class, so tests can check labels travel with their images.
    """
    rng = np.random.default_rng(0)
    num_classes = 100 if cifar100 else 10
    label_key = b"fine_labels" if cifar100 else b"labels"

    def batch(labels: np.ndarray) -> dict:
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        data[:, 0] = labels
        return {b"data": data, label_key: labels.tolist(), b"batch_label": b"tiny"}

    train = rng.permutation(np.repeat(np.arange(num_classes), per_class_train))
    test = np.repeat(np.arange(num_classes), per_class_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        if cifar100:
            _member(archive, "cifar-100-python/train", batch(train))
            _member(archive, "cifar-100-python/test", batch(test))
        else:
            for i, part in enumerate(np.array_split(train, 5), start=1):
                _member(archive, f"cifar-10-batches-py/data_batch_{i}", batch(part))
            _member(archive, "cifar-10-batches-py/test_batch", batch(test))
            _member(archive, "cifar-10-batches-py/batches.meta", {b"label_names": []})
    return RemoteFile(path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest())


@pytest.fixture
def cifar10_remote(tmp_path: Path) -> RemoteFile:
    """A tiny CIFAR-10 archive served by a file:// URL (10 classes x 10 train, x 2 test)."""
    return make_cifar_archive(tmp_path / "server" / "cifar-10-python.tar.gz")


@pytest.fixture
def cifar100_remote(tmp_path: Path) -> RemoteFile:
    """A tiny CIFAR-100 archive served by a file:// URL (100 classes x 4 train, x 1 test)."""
    path = tmp_path / "server" / "cifar-100-python.tar.gz"
    return make_cifar_archive(path, cifar100=True, per_class_train=4, per_class_test=1)
