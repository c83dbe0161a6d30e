"""SIGTERM under DDP (gloo processes): every rank stops at the same step with one
last.ckpt, the run exits with 128 + SIGTERM, and ``ckpt_path=last`` finishes it; on the
same number of processes the resumed run ends with the uninterrupted run's metrics.json."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from resilience_support import TINY, inject, metrics_of, run_train

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

# 4 training batches per epoch: global steps 5, 6 and 7 end batches 0-2 of epoch 1
# (mid-epoch), step 8 ends it.
MID_EPOCH_STEPS = (5, 6, 7)


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_sigterm_to_every_rank_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """Two processes, online smoothing (per-rank statistics mid-epoch) with dropout: each
    rank's RNG states and sums travel in the checkpoint, so the resumed run is exact."""
    step = random.choice(MID_EPOCH_STEPS)  # any of them must do
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = [*TINY, "trainer=ddp_cpu", "smoothing=online"]
    run_train(straight, *args)

    started = time.monotonic()
    stopped = run_train(resumed, *args, inject("term", "SignalAtStep", step=step), check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert time.monotonic() - started < 60
    last = _last(resumed)
    # signalled after step `step`, agreed at the end of the next one, stopped there
    assert last["global_step"] == step + 1, f"signal after step {step}"
    assert last["adaptls_world_size"] == 2 and len(last["adaptls_rank_states"]) == 2
    assert len(last["callbacks"]["RNGState"]["ranks"]) == 2
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": step + 1 - 4, "batch_size": 32, "num_replicas": 2}
    ]
    assert not (resumed / "metrics.json").exists()

    run_train(resumed, *args, "ckpt_path=last")
    assert metrics_of(resumed) == metrics_of(straight), f"signal after step {step}"
    strategy_state = [
        json.loads((d / "metrics.json").read_text())["strategy"] for d in (straight, resumed)
    ]
    assert strategy_state[0] == strategy_state[1]


def test_sigterm_to_one_rank_of_three_at_an_epoch_end_stops_all_after_the_epoch(
    tmp_path: Path,
) -> None:
    """Rank 2 alone is signalled after step 3; the ranks agree at step 4, the last of
    epoch 0, so they stop after that epoch's end (validation, checkpoints) and the resumed
    run trains epochs 1 and 2."""
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer=ddp_cpu", "trainer.devices=3", "smoothing=feedback"]
    started = time.monotonic()
    stopped = run_train(run_dir, *args, inject("term", "SignalAtStep", step=3, rank=2), check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert time.monotonic() - started < 60
    last = _last(run_dir)
    assert last["global_step"] == 4 and last["epoch"] == 1  # epoch 0 counted as completed
    assert last["adaptls_world_size"] == 3
    assert not (run_dir / "metrics.json").exists()

    run_train(run_dir, *args, "ckpt_path=last")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["evaluation"]["epoch"] == 2 and record["evaluation"]["step"] == 12
