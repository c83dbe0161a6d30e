"""One process of a 2-process CPU (gloo) Trainer run with online and feedback smoothing:
``python -m torch.distributed.run --nproc_per_node 2 hf_ddp_worker.py OUT``. Each rank saves
its strategies' state to OUT/rank<r>.pt."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_support import TokenRows, gpt2, trainer

from adaptls.integrations.hf import smoothing_loss


def main(out: Path) -> None:
    states = {}
    for name in ("online", "feedback"):
        loss = smoothing_loss(name)
        run = trainer(
            gpt2(),
            out / name,
            loss,
            TokenRows(16),
            TokenRows(8, seed=1),
            num_train_epochs=2,
            eval_strategy="epoch",
            per_device_train_batch_size=2,
            ddp_backend="gloo",
        )
        run.train()
        states[name] = {k: v.cpu() for k, v in loss.strategy.get_extra_state().items()}
    states["world_size"] = dist.get_world_size()
    torch.save(states, out / f"rank{dist.get_rank()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
