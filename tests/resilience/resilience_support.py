"""Helpers of the resilience tests: run ``python -m adaptls.train`` for real, in a
subprocess, on a tiny setting, with fault callbacks from this folder importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Three short epochs of a small CNN with dropout (so the RNG matters) on MNIST-1D.
TINY = [
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "data.batch_size=32",
    "model.dropout=0.2",
    "logger=none",
]


def inject(name: str, cls: str, **kwargs: Any) -> str:
    """A command-line override adding a callback from fault_callbacks.py."""
    args = ",".join(f"{k}:{v}" for k, v in kwargs.items())
    return f"+callbacks.{name}={{_target_:fault_callbacks.{cls}{',' + args if args else ''}}}"


def run_train(
    run_dir: Path,
    *overrides: str,
    env: dict[str, str | None] | None = None,
    check: bool = True,
    timeout: float = 600,
    multirun: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m adaptls.train`` with its output in ``run_dir``; returns the process."""
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    cmd = [
        sys.executable,
        "-m",
        "adaptls.train",
        *(["-m"] if multirun else []),
        *overrides,
        f"{dir_key}={run_dir}",
    ]
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HYDRA_FULL_ERROR": "1",
        **(env or {}),
    }
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None: unset it
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def metrics_of(run_dir: Path) -> dict[str, float]:
    record = json.loads((run_dir / "metrics.json").read_text())
    return {**record["val"], **record["test"]}
