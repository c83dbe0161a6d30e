"""W&B, offline: one real run per training run, holding the resolved config and the final
metrics, closed when the run ends (also when it fails); a multirun gives one run per job,
grouped by the sweep. Never online: the fixtures force WANDB_MODE=offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import wandb
from omegaconf import OmegaConf

from adaptls.train import train

pytestmark = pytest.mark.wandb


def offline_runs(output_dir: Path) -> list[Path]:
    return sorted((output_dir / "wandb").glob("offline-run-*"))


def test_a_run_records_the_resolved_config_and_the_final_metrics(
    compose_train, read_wandb_run, tmp_path, tiny
):
    """The default experiment (MNIST-1D, CNN, uniform smoothing, W&B offline), shortened."""
    output_dir = tmp_path / "run"
    cfg = compose_train(*tiny, output_dir=output_dir)
    assert cfg.logger.wandb.offline is True
    resolved = OmegaConf.to_container(cfg, resolve=True)
    train(cfg)
    assert wandb.run is None  # finished: a next run in this process gets its own

    (run_dir,) = offline_runs(output_dir)
    run = read_wandb_run(run_dir)
    assert run["exit_code"] == 0
    assert run["group"] == ""  # a single run belongs to no sweep
    assert {k: v for k, v in run["config"].items() if k != "_wandb"} == resolved
    metrics = json.loads((output_dir / "metrics.json").read_text())
    final = {**metrics["val"], **metrics["test"]}
    assert {"val/acc", "val/ece", "val/nll", "test/acc", "test/ece", "test/nll"} <= set(final)
    for name, value in final.items():
        assert math.isclose(run["summary"][name], value, rel_tol=1e-6), name


def test_a_failing_run_closes_its_wandb_run(compose_train, read_wandb_run, tmp_path, tiny, small):
    """A non-finite loss stops training; the W&B run is marked failed and closed."""
    output_dir = tmp_path / "run"
    cfg = compose_train("optimizer.lr=1e30", *tiny, *small, output_dir=output_dir)
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        train(cfg)
    assert wandb.run is None
    (run_dir,) = offline_runs(output_dir)
    assert read_wandb_run(run_dir)["exit_code"] == 1
    assert not (output_dir / "metrics.json").exists()


@pytest.mark.slow
def test_a_multirun_gives_one_wandb_run_per_job_grouped_by_sweep(
    run_cli, read_wandb_run, tmp_path, tiny, small
):
    sweep_dir = tmp_path / "sweep-7"
    result = run_cli("-m", "seed=0,1", f"hydra.sweep.dir={sweep_dir}", *tiny, *small, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("| test |") == 2  # each job printed its table

    runs = {}
    for job in ("0", "1"):
        (run_dir,) = offline_runs(sweep_dir / job)
        runs[job] = read_wandb_run(run_dir)
        assert (sweep_dir / job / "metrics.json").is_file()
        assert (
            f"metrics written to {sweep_dir / job / 'metrics.json'}"
            in (sweep_dir / job / "train.log").read_text()
        )
    assert runs["0"]["id"] != runs["1"]["id"]
    assert [r["group"] for r in runs.values()] == ["sweep-7", "sweep-7"]
    assert [r["config"]["seed"] for r in runs.values()] == [0, 1]
    assert [r["exit_code"] for r in runs.values()] == [0, 0]
    for job, run in runs.items():
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert math.isclose(run["summary"]["test/acc"], metrics["test"]["test/acc"])


def test_the_closing_table_comes_after_the_wandb_run_summary(
    compose_train, tmp_path, tiny, small, monkeypatch, capsys
):
    """W&B prints its run summary when its run finishes; the run's own table and verdict
    come after it, as the last thing a user sees."""
    import adaptls.train as train_module

    finish = train_module._finish_wandb

    def finish_and_mark(*args, **kwargs):
        finish(*args, **kwargs)
        print("W&B RUN FINISHED")

    monkeypatch.setattr(train_module, "_finish_wandb", finish_and_mark)
    cfg = compose_train(*tiny, *small, output_dir=tmp_path)  # W&B (offline) by default
    assert "wandb" in cfg.logger
    train_module.train(cfg)
    out = capsys.readouterr().out
    finished, table, verdict = (
        out.index(marker) for marker in ("W&B RUN FINISHED", "checkpoint: epoch", "Test set:")
    )
    assert finished < table < verdict
