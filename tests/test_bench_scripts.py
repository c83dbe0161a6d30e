"""The benchmark scripts of ``make bench`` run and print their tables, and write them into
their own sections of a report (tiny settings, a temporary report: the numbers themselves
are not checked, benchmarks are not timed tests)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def load_bench_report():
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPTS / "bench_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_script_writes_its_own_section_of_the_report(tmp_path):
    """--report writes the printed tables under a header naming the command, the date and
    the machine; a second script adds its section, and a rerun replaces only its own."""
    report = tmp_path / "docs" / "performance.md"
    loss = ("bench_loss.py", "--sizes", "64x10", "--repeats", "1", "--no-compile", "--no-memory")
    printed = run(*loss, "--report", str(report))
    assert f"wrote section 'bench_loss' of {report}" in printed
    text = report.read_text()
    assert text.startswith("# Performance")
    assert (
        "`python scripts/bench_loss.py --sizes 64x10 --repeats 1 --no-compile --no-memory`" in text
    )
    assert "--report" not in text.split("<!-- bench:bench_loss -->")[1]
    assert f"torch {torch.__version__}" in text and torch.backends.cpu.get_cpu_capability() in text
    assert "| UniformSmoothing(0.1)(x, y) |" in text and "\n# " not in text.split("-->", 1)[1]

    run("bench_metrics.py", "--repeats", "1", "--report", str(report))
    both = report.read_text()
    assert "<!-- bench:bench_loss -->" in both and "<!-- bench:bench_metrics -->" in both
    run(*loss, "--report", str(report))
    again = report.read_text()
    assert again.count("<!-- bench:bench_loss -->") == 1
    assert again.index("<!-- bench:bench_loss -->") < again.index("<!-- bench:bench_metrics -->")
    metrics = slice(again.index("<!-- bench:bench_metrics -->"), None)
    assert again[metrics] == both[slice(both.index("<!-- bench:bench_metrics -->"), None)]
    assert "| 64 x 10 |" in again


def test_write_section_keeps_the_rest_of_the_page(tmp_path):
    report = load_bench_report()
    page = tmp_path / "performance.md"
    page.write_text(
        "# Performance\n\nintro\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\nhistory\n"
    )
    report.write_section(page, "a", "<!-- bench:a -->\nnew\n<!-- /bench:a -->\n")
    report.write_section(page, "b", "<!-- bench:b -->\nb\n<!-- /bench:b -->\n")
    assert page.read_text() == (
        "# Performance\n\nintro\n\n<!-- bench:a -->\nnew\n<!-- /bench:a -->\n\nhistory\n"
        "\n<!-- bench:b -->\nb\n<!-- /bench:b -->\n"
    )
    page.write_text("<!-- bench:a -->\nno end marker\n")
    with pytest.raises(ValueError, match="has no <!-- /bench:a -->"):
        report.write_section(page, "a", "<!-- bench:a -->\nx\n<!-- /bench:a -->\n")


def test_without_report_nothing_is_written():
    page = SCRIPTS.parent / "docs" / "performance.md"
    before = page.stat().st_mtime_ns
    printed = run(
        "bench_loss.py", "--sizes", "64x10", "--repeats", "1", "--no-compile", "--no-memory"
    )
    assert "wrote section" not in printed and page.stat().st_mtime_ns == before
