"""Checkpoint files that are either complete or absent."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from adaptls.checks import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the target directory, fsync, then ``os.replace``
    (:func:`adaptls.checks.atomic_write`).

    A process killed while saving leaves the previous ``last.ckpt`` intact (plus, at worst,
    a ``.partial`` file that nothing loads). Lightning's own writer stages the file in the
    system temp directory and *moves* it, which is a copy, not an atomic rename, whenever
    that directory is on another file system.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} takes no storage_options, got {storage_options!r}"
            )
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
