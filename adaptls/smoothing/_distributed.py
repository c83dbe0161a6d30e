"""torch.distributed helpers that degrade to no-ops in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist

REDUCE_OPS = ("sum", "max", "min")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over all ranks in place (a no-op without a process group).

    The collective runs where the process group's backend needs the data: NCCL only
    reduces CUDA tensors, so a CPU tensor under NCCL travels to the current CUDA device
    and back; gloo takes CPU and CUDA tensors alike.
    """
    if not is_distributed():
        return tensor
    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        moved = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(moved, op=reduce_op)
        tensor.copy_(moved)
    else:
        dist.all_reduce(tensor, op=reduce_op)
    return tensor
