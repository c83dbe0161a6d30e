"""Online smoothing under Lightning DDP (2 CPU processes) holds the same S on both ranks,
equal to a single process that sees the same global batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from resilience_support import inject, run_train

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

# 3600 training samples; with per-rank batch B the DDP global batch k is positions
# [2kB, 2(k+1)B) of the epoch's order (DistributedSampler deals positions round-robin),
# exactly the single process's batch k at batch size 2B. Gradients are means, so DDP's
# averaged gradient equals the single process's: the models, hence S, evolve identically.
COMMON = [
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=6",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "model.dropout=0.0",
    "smoothing=online",
    "logger=none",
    "scheduler=none",
]


def _state(run_dir: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "state" / f"rank{rank}.pt", weights_only=True)


def test_online_S_is_identical_on_both_ranks_and_equals_single_process(tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_train(
        single,
        *COMMON,
        "data.batch_size=64",
        inject("dump", "DumpStrategyState", dirpath=single / "state"),
    )
    run_train(
        ddp,
        *COMMON,
        "trainer=ddp_cpu",
        "data.batch_size=32",
        inject("dump", "DumpStrategyState", dirpath=ddp / "state"),
    )

    reference = _state(single, 0)["S"]
    uniform = torch.full_like(reference, 1 / reference.shape[0])
    assert not torch.allclose(reference, uniform)  # the hooks ran: S moved
    for rank in (0, 1):
        torch.testing.assert_close(_state(ddp, rank)["S"], reference, atol=1e-6, rtol=0)
    assert sorted(p.name for p in ddp.glob("metrics.json")) == ["metrics.json"]
