"""Validation and test under 2 and 3 gloo processes equal one process: every row once (no
sampler padding), the suite's figures and the validation-driven strategies' state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_evaluation_worker import evaluate

WORKER = Path(__file__).with_name("ddp_evaluation_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3])
def test_evaluation_on_several_processes_equals_one_process(tmp_path, world_size):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["OMP_NUM_THREADS"] = "1"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(rank),
                str(world_size),
                str(tmp_path / "init"),
                str(tmp_path / f"rank{rank}.pt"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output[-3000:]

    single = evaluate()
    assert single["rows"] == 301
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(world_size)]
    # each rank's share, no padding: together every validation row once
    assert sum(r["rows"] for r in results) == 301
    assert max(r["rows"] for r in results) - min(r["rows"] for r in results) <= 1
    # The same rows and logits, summed in another order: float32 sums of n terms of size
    # <= 1 agree to n * 2^-24 (relative and absolute); float64 ones far closer.
    tol = {"rtol": 301 * 2**-24, "atol": 301 * 2**-24, "equal_nan": True}
    for result in results:
        for stage in ("val", "test", "strategies"):
            torch.testing.assert_close(result[stage], single[stage], **tol)
    moved = single["strategies"]
    assert not torch.allclose(moved["feedback"]["epsilon"], torch.tensor(0.1, dtype=torch.float64))
