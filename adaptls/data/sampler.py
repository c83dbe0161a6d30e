"""A shuffling sampler whose order is a function of (seed, epoch) only."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Random order per epoch, drawn from a generator seeded with ``seed + epoch``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch, so the order of
    epoch e is the same whether the run went straight through or was resumed from a
    checkpoint at epoch e (a sampler carrying one generator across epochs would replay
    epoch 0's order after a resume). Under DDP Lightning replaces it with a
    ``DistributedSampler``, which follows the same (seed, epoch) rule.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.num_samples, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_samples
