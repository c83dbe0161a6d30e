"""The validation and test rows of one rank: every row once over the ranks, no padding."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class EvaluationSampler(DistributedSampler):
    """Rank r of W takes rows r, r + W, r + 2W, ... of the split, in order: the ranks' shares
    differ by at most one row and together hold every row exactly once.

    A ``DistributedSampler`` pads a split that W does not divide with repeats of its first
    rows (1000 test rows on 3 ranks become 1002), so every synced figure (accuracy, ECE,
    the validation passes of feedback, CALS and AdaFocal) would count those rows twice. The
    metrics' states are sums, or row lists gathered by torchmetrics, which takes uneven
    lengths: with these shares the figures are those of one process over the split.

    A subclass of ``DistributedSampler`` because Lightning then keeps it (it replaces any
    other sampler of an evaluation loader by a padding one under DDP). Every rank must get
    at least one batch: DDP syncs buffers in the first forward of an evaluation pass, a
    collective; a split with fewer rows than ranks is refused.
    """

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        rows = len(dataset)
        if 0 < rows < num_replicas:
            raise ValueError(
                f"an evaluation split of {rows} rows cannot be shared by {num_replicas} "
                "processes (each needs a row): use a larger split or fewer processes"
            )
        self.total_size = rows
        self.num_samples = len(range(rank, rows, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def evaluation_share(dataset: Sized) -> EvaluationSampler:
    """This process's :class:`EvaluationSampler` (all rows without a process group)."""
    replicas, rank = 1, 0
    if dist.is_available() and dist.is_initialized():
        replicas, rank = dist.get_world_size(), dist.get_rank()
    return EvaluationSampler(dataset, num_replicas=replicas, rank=rank)
