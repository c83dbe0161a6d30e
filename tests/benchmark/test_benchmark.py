"""The benchmark protocol end to end on tiny data (2 methods, 2 trials, 2 seeds, 2 epochs),
an interrupted benchmark resumed, its statistics and its refusals."""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adaptls.benchmark import BenchmarkError, benchmark, load_config, mean_ci, paired_difference
from adaptls.benchmark import runs as runs_module

TINY_RUN = [
    "model=mlp",
    "model.hidden=[16]",
    "data.num_train=400",
    "data.num_test=200",
    "data.batch_size=64",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]
SMOKE = ["setting=synthetic", "methods=[none,zipf]", "baseline=none"]
SMOKE += ["budget.trials=2", "budget.seeds=2", "budget.epochs=2", "runner=inline"]


def smoke_config(root: Path, *extra: str):
    quoted = ",".join(f"'{o}'" for o in TINY_RUN)  # YAML: an item holding [ ] is quoted
    overrides = [f"overrides=[{quoted}]", f"out={root / 'out'}"]
    return load_config([*SMOKE, *overrides, f"report={root / 'report' / 'synthetic.md'}", *extra])


@pytest.fixture(scope="module", autouse=True)
def isolated(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("ADAPTLS_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    cfg = smoke_config(root)
    lines: list[str] = []
    report = benchmark(cfg, "python -m adaptls.benchmark (test)", log=lines.append)
    return root, cfg, report, lines


def journal(root: Path, method: str) -> list[dict]:
    path = root / "out" / "search" / method / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_benchmark_writes_the_report(smoke):
    root, _, report, lines = smoke
    text = report.read_text()
    assert "| none | 2 |" in text and "| zipf | 2 |" in text
    assert "## Paired differences against none" in text
    assert "python -m adaptls.benchmark (test)" in text and "machine:" in text
    assert report.with_suffix(".png").stat().st_size > 1000
    rows = list(csv.DictReader(report.with_suffix(".csv").open()))
    acc = {r["method"]: r for r in rows if r["metric"] == "test/acc"}
    assert set(acc) == {"none", "zipf"} and acc["zipf"]["seeds"] == "1 2"
    values = [float(v) for v in acc["zipf"]["values"].split()]
    assert float(acc["zipf"]["mean"]) == pytest.approx(sum(values) / 2)
    # 2 trials per method at the search seed, then the chosen one at 2 fresh seeds
    assert sum("run trial_" in line for line in lines) == 4
    assert sum("run seed_" in line for line in lines) == 4
    for method in ("none", "zipf"):
        trials = journal(root, method)
        assert [t["number"] for t in trials] == [0, 1]
        best = min(trials, key=lambda t: t["value"])
        chosen = json.loads((root / "out" / "final" / method / "chosen.json").read_text())
        assert chosen == best["params"]
        for t in trials:
            run = json.loads(
                (
                    root / "out" / "search" / method / f"trial_{t['number']}" / "metrics.json"
                ).read_text()
            )
            assert run["config"]["seed"] == 0 and run["val"]["val/nll"] == t["value"]
            assert (
                run["evaluation"]["checkpoint"] == "last"
                and run["config"]["trainer"]["max_epochs"] == 2
            )
        for seed in (1, 2):
            run = json.loads(
                (root / "out" / "final" / method / f"seed_{seed}" / "metrics.json").read_text()
            )
            assert run["config"]["seed"] == seed
    assert set(journal(root, "zipf")[0]["params"]) == {"smoothing.loss_lambda", "smoothing.power"}


def test_an_interrupted_benchmark_resumes_without_rerunning(smoke, tmp_path, monkeypatch):
    """Stopped as its 6th run starts (none done, zipf's first trial done), restarted: only
    what had not finished runs, and the search asks what the uninterrupted one asked."""
    started: list[str] = []
    real_run = runs_module.run_inline

    def counting(overrides, run_dir):
        started.append(str(run_dir))
        if len(started) == 6:
            raise KeyboardInterrupt  # the benchmark is killed mid-run
        return real_run(overrides, run_dir)

    monkeypatch.setattr(runs_module, "run_inline", counting)
    cfg = smoke_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        benchmark(cfg, "first", log=lambda line: None)
    first = list(started)
    started.clear()
    benchmark(cfg, "second", log=lambda line: None)
    assert len(first) == 6 and len(started) == 8 - 5  # the 6th run again, then the last two
    assert started[0] == first[-1] and not set(started) & set(first[:-1])
    for method in ("none", "zipf"):
        assert journal(tmp_path, method) == journal(smoke[0], method)  # same trials, same values
    started.clear()
    benchmark(cfg, "third", log=lambda line: None)  # all done: only the report again
    assert started == []
    assert (tmp_path / "report" / "synthetic.md").read_text().count("`third`") == 1


def test_mean_ci_and_paired_difference():
    e = mean_ci([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(mean_ci([1.0]).half_width) and mean_ci([]).n == 0
    # a constant per-seed gap has a zero-width paired interval, whatever the seeds' spread
    d = paired_difference({1: 0.5, 2: 0.9, 3: 0.1}, {1: 0.4, 2: 0.8, 3: 0.0, 4: 7.0})
    assert d.mean == pytest.approx(0.1) and d.half_width == pytest.approx(0.0, abs=1e-12)
    assert d.n == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[none,nope]", r"method 'nope' is not a smoothing option; allowed: acls, "),
        ("baseline=focal", r"baseline 'focal' must be one of methods \['none', 'uniform'\]"),
        ("budget.trials=0", r"budget.trials must be an int >= 1, got 0"),
        ("search_seed=2", r"search_seed 2 is among the stage-2 seeds \(1..5\)"),
        ("setting=imagenet", r"setting 'imagenet' is not a data option"),
        ("budgets.trials=3", r"unknown benchmark setting 'budgets.trials'"),
        ("runner=thread", r"runner must be one of \('process', 'inline'\)"),
    ],
)
def test_bad_settings_are_refused_before_any_run(override, message):
    with pytest.raises(BenchmarkError, match=message):
        load_config([override])


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "adaptls.benchmark", "direction=up", f"out={tmp_path}"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "adaptls.benchmark: direction must be one of ('minimize', 'maximize'), got 'up'"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_default_runner_runs_adaptls_train_as_a_subprocess(tmp_path):
    cfg = smoke_config(tmp_path, "methods=[uniform]", "baseline=uniform", "budget.trials=1",
                       "budget.seeds=1", "runner=process")  # fmt: skip
    report = benchmark(cfg, "process", log=lambda line: None)
    assert "| uniform | 1 |" in report.read_text()
    assert (
        tmp_path / "out" / "final" / "uniform" / "seed_1" / ".hydra" / "overrides.yaml"
    ).is_file()


def test_a_finished_run_is_reused_only_for_the_same_overrides(tmp_path, monkeypatch):
    calls = []

    def fake(overrides, run_dir):
        calls.append(list(overrides))
        (run_dir / "metrics.json").write_text(json.dumps({"val": {"val/nll": len(calls)}}))
        return runs_module.finished(run_dir)

    monkeypatch.setattr(runs_module, "run_inline", fake)
    run = functools.partial(runs_module.run, log=lambda line: None, runner="inline")
    assert run(["a=1"], tmp_path / "r")["val"]["val/nll"] == 1
    assert run(["a=1"], tmp_path / "r")["val"]["val/nll"] == 1  # reused
    assert run(["a=2"], tmp_path / "r")["val"]["val/nll"] == 2  # asked for another run
    (tmp_path / "r" / "metrics.json").unlink()  # killed before it finished
    assert run(["a=2"], tmp_path / "r")["val"]["val/nll"] == 3
    assert calls == [["a=1"], ["a=2"], ["a=2"]]
