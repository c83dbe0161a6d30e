"""The benchmark scripts of ``make bench`` run and print their tables (tiny settings; the
numbers themselves are not checked: benchmarks are not timed tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_loss_prints_the_summary_table():
    text = run("bench_loss.py", "--sizes", "64x10", "--repeats", "1", "--no-compile")
    assert "| UniformSmoothing(0.1)(x, y) |" in text and "extra peak memory" in text


def test_bench_metrics_prints_suite_over_torchmetrics():
    text = run("bench_metrics.py", "--repeats", "1", "--parts")
    assert "| 4096 x 100 |" in text and "suite / torchmetrics" in text


def test_bench_overhead_prints_the_throughput_ratio():
    text = run(
        "bench_overhead.py",
        "--repeats",
        "1",
        "--data",
        "synthetic",
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--clock",
        "process",
        "--train-only",
    )
    assert "2 epochs" in text and "process clock" in text
    assert "| training + validation |" in text and "| training only |" in text
