"""What differs between the ranks of a DDP run, gathered into its one checkpoint.

Rank 0 alone writes a checkpoint, so without this every rank would resume with rank 0's
RNG states, running sums and strategy statistics. Each function is a collective when a
process group is initialised (every rank must call it at the same point: Lightning writes
a checkpoint on all ranks at once) and plain in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

#: the checkpoint keys: the number of processes that wrote it, and each rank's own entries
#: of the module's state_dict (those that are not parameters, which DDP keeps equal)
WORLD_SIZE_KEY = "adaptls_world_size"
RANK_STATES_KEY = "adaptls_rank_states"


def gather_from_ranks(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def save_rank_states(
    checkpoint: dict[str, Any], parameter_names: set[str], world_size: int
) -> None:
    """Record the world size and, with several ranks, every rank's non-parameter entries
    of ``checkpoint["state_dict"]`` (on the CPU)."""
    checkpoint[WORLD_SIZE_KEY] = int(world_size)
    if world_size == 1:
        return
    own = {
        k: v.detach().cpu() if torch.is_tensor(v) else v
        for k, v in checkpoint["state_dict"].items()
        if k not in parameter_names
    }
    checkpoint[RANK_STATES_KEY] = gather_from_ranks(own)


def restore_rank_state(checkpoint: dict[str, Any], rank: int, world_size: int) -> None:
    """Put this rank's own entries into ``checkpoint["state_dict"]`` before it is loaded;
    ValueError for a checkpoint of another number of processes."""
    saved = checkpoint_world_size(checkpoint)
    if saved is not None and saved != world_size:
        raise ValueError(
            f"the checkpoint was written by {saved} process(es), this run has {world_size}: "
            "resume with the same number of processes"
        )
    ranks = checkpoint.get(RANK_STATES_KEY)
    if ranks is not None:
        checkpoint["state_dict"].update(ranks[rank])


def checkpoint_world_size(checkpoint: Mapping[str, Any]) -> int | None:
    """The number of processes that wrote the checkpoint (None: not recorded, earlier
    versions)."""
    saved = checkpoint.get(WORLD_SIZE_KEY)
    return None if saved is None else int(saved)
