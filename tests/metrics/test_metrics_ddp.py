"""Two CPU processes (gloo): synced metric values equal one process on all the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaptls.metrics import AdaptiveCalibrationError, CalibrationSuite, ExpectedCalibrationError

WORKER = Path(__file__).with_name("metrics_ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ddp
def test_two_process_values_equal_single_process(tmp_path, sum_tol):
    generator = torch.Generator().manual_seed(0)
    k = 6
    logits = 3 * torch.randn(300, k, generator=generator)
    targets = torch.randint(0, k, (300,), generator=generator)
    targets[::11] = -100
    class_counts = [400, 150, 80, 40, 10, 3]
    torch.save(
        {"logits": logits, "targets": targets, "class_counts": class_counts},
        tmp_path / "data.pt",
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["OMP_NUM_THREADS"] = "1"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(rank),
                "2",
                str(tmp_path / "init"),
                str(tmp_path / "data.pt"),
                str(tmp_path / f"rank{rank}.pt"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output

    suite = CalibrationSuite(k, class_counts=class_counts)
    ece, adaece = ExpectedCalibrationError(k), AdaptiveCalibrationError(k)
    for metric in (suite, ece, adaece):
        metric.update(logits, targets)
    expected = {
        "suite": suite.compute(),
        "per_class": suite.per_class(),
        "reliability": suite.reliability(),
        "ece": ece.compute(),
        "ece_reliability": ece.reliability(),
        "adaece": adaece.compute(),
    }
    rows = int((targets != -100).sum())
    cut = 2 * len(targets) // 3
    local_rows = [int((targets[:cut] != -100).sum()), int((targets[cut:] != -100).sum())]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["suite"].keys() == expected["suite"].keys()
        # Sums over uneven shards round differently in float32 (bound: sum_tol).
        torch.testing.assert_close(got["suite"], expected["suite"], **sum_tol(rows))
        for key in ("per_class", "reliability", "ece_reliability"):
            torch.testing.assert_close(got[key], expected[key], **sum_tol(rows), equal_nan=True)
        torch.testing.assert_close(got["ece"], expected["ece"], **sum_tol(rows))
        # AdaECE sorts the gathered rows: the same multiset gives the same value.
        torch.testing.assert_close(got["adaece"], expected["adaece"])
        assert float(got["reliability"]["count"].sum()) == rows
        assert int(got["local_rows"]) == local_rows[rank]
