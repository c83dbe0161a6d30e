"""Carry the random number generators through checkpoints, for exact resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from adaptls.run.rank_states import gather_from_ranks


class RNGState(pl.Callback):
    """Save the Python, NumPy, torch CPU and CUDA RNG states of every rank in every
    checkpoint: ``{"ranks": [state of rank 0, state of rank 1, ...]}``.

    A resumed run restores them at ``on_train_start``, i.e. after Lightning's sanity-check
    validation (which happens before training and is not part of the uninterrupted run's
    stream), so the next epoch draws exactly what the uninterrupted run drew (dropout,
    augmentation). Under DDP every rank's state is gathered into the one file (the
    checkpoint is written by all ranks at the same point, rank 0 writing) and each rank
    takes back its own; a checkpoint of another number of processes is refused at build
    (:func:`adaptls.run.preflight.check_resume`).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": gather_from_ranks(_local_state())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        saved, self._pending = self._pending, None
        ranks = saved.get("ranks", [saved])  # earlier versions: rank 0's state alone
        if len(ranks) != trainer.world_size:
            raise ValueError(
                f"the checkpoint holds the RNG states of {len(ranks)} process(es), this run "
                f"has {trainer.world_size}: resume with the same number of processes"
            )
        _restore(ranks[trainer.global_rank])


def _local_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Checkpoints load with torch.load(weights_only=True): keep to tensors and plain Python.
def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
    )
