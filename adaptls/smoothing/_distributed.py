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


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order, on every rank (the
    tensor itself without a process group). Ranks may hold different numbers of rows;
    the other dimensions and the dtype must agree.

    Two collectives (the row counts, then the rows padded to the largest count), so every
    rank must call it at the same point. Under NCCL a CPU tensor travels to the current
    CUDA device and the result comes back to the tensor's device, as in :func:`all_reduce`.
    """
    if not is_distributed():
        return tensor
    device = tensor.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    local = tensor.to(device)
    count = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]  # host values: the padding and the trim need them
    largest = max(sizes)
    if largest == 0:
        return tensor.new_empty((0, *tensor.shape[1:]))
    padded = local.new_zeros((largest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]).to(
        tensor.device
    )
