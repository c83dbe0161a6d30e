"""Exact resume after SIGKILL (epoch start) and SIGTERM (mid-epoch), atomic checkpoint files."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from resilience_support import TINY, inject, metrics_of, run_train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("strategy", ["online", "feedback"])
def test_killed_run_resumed_from_last_matches_uninterrupted(tmp_path: Path, strategy: str) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = [*TINY, f"smoothing={strategy}"]
    run_train(straight, *args)

    killed = run_train(resumed, *args, inject("kill", "KillAtEpochStart", epoch=2), check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (resumed / "metrics.json").exists()
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1

    run_train(resumed, *args, "ckpt_path=last")
    assert metrics_of(resumed) == metrics_of(straight)
    strategy_state = [
        json.loads((d / "metrics.json").read_text())["strategy"] for d in (straight, resumed)
    ]
    assert strategy_state[0] == strategy_state[1]  # S, or feedback's epsilon and gap


@pytest.mark.parametrize("strategy", ["uniform", "online", "self_distill"])
def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, strategy: str) -> None:
    """SIGTERM after global step 5, seen by the stop agreement at the end of step 6 (epoch
    1, batch 1 of 4): the interrupt callback writes last.ckpt mid-epoch; the resumed run
    trains batches 2 and 3 of epoch 1's permutation (the loader's state) with the RNG state of the interruption, and ends where the
    uninterrupted run ends, bit for bit on the CPU (same operations in the same order)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = [*TINY, f"smoothing={strategy}", "logger=csv"]  # the epoch's training figures too
    run_train(straight, *args)

    stopped = run_train(resumed, *args, inject("term", "SignalAtStep", step=5), check=False)
    assert stopped.returncode == 128 + signal.SIGTERM
    last = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # mid-epoch 1: written by the interrupt, not the epoch end
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": 2, "batch_size": 32, "num_replicas": 1}
    ]
    assert not (resumed / "metrics.json").exists()

    again = run_train(resumed, *args, "ckpt_path=last")
    assert "not resumable" not in again.stdout + again.stderr
    assert metrics_of(resumed) == metrics_of(straight)
    # epoch 1's train/loss_epoch and train/acc cover the whole epoch: the sums before the
    # interruption travel in the checkpoint
    figures = [_epoch_training_figures(d) for d in (straight, resumed)]
    assert len(figures[0]) == len(figures[1]) == 3
    assert figures[1][1:] == figures[0][1:]
    strategy_state = [
        json.loads((d / "metrics.json").read_text())["strategy"] for d in (straight, resumed)
    ]
    assert strategy_state[0] == strategy_state[1]


def test_non_finite_loss_stops_with_step_and_strategy_and_keeps_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, "smoothing=class_frequency", "data=mnist1d_lt"]
    failed = run_train(run_dir, *args, inject("nan", "PoisonWeightsAtEpoch", epoch=1), check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "non-finite training loss" in output
    assert "global step 4" in output  # the first step of epoch 1
    assert "ClassFrequencySmoothing(epsilon_head=0.3" in output
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    weights = [v for v in last["state_dict"].values() if torch.is_tensor(v)]  # not extra state
    assert weights and all(torch.isfinite(v).all() for v in weights if v.is_floating_point())
    assert not (run_dir / "metrics.json").exists()


def test_a_kill_while_saving_never_corrupts_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from adaptls.run.checkpoint_io import AtomicCheckpointIO
        io = AtomicCheckpointIO()
        io.save_checkpoint({{"step": 1, "w": torch.ones(10)}}, {str(target)!r})
        real_save = torch.save
        def save_then_die(obj, f, *a, **k):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save_then_die
        io.save_checkpoint({{"step": 2, "w": torch.zeros(10)}}, {str(target)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = torch.load(target, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(10))
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]


def test_a_failed_save_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adaptls.run.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, tmp_path / "last.ckpt")

    def broken(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"step": 1}


def _epoch_training_figures(run_dir: Path) -> list[tuple[str, str]]:
    """(train/loss_epoch, train/acc) per epoch, from the CSV logs of every start of a run."""
    rows = [
        row
        for path in sorted(run_dir.glob("csv/version_*/metrics.csv"))
        for row in csv.DictReader(path.open())
    ]
    loss = [r["train/loss_epoch"] for r in rows if r.get("train/loss_epoch")]
    acc = [r["train/acc"] for r in rows if r.get("train/acc")]
    return list(zip(loss, acc, strict=True))
