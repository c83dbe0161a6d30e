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
    """The default experiment (MNIST-1D, CNN, uniform smoothing, W&B offline), shortened to
    three epochs: the runs table's summaries are the best validation NLL, ECE (min) and
    accuracy (max) over the run, the test figures and the evaluated checkpoint's
    validation figures; the config holds the resolved config and the strategy."""
    output_dir = tmp_path / "run"
    cfg = compose_train(*tiny, "trainer.max_epochs=3", output_dir=output_dir)
    assert cfg.logger.wandb.offline is True
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["optimizer"]["lr"] is None  # the model's default_lr, resolved by build
    resolved["optimizer"]["lr"] = 0.02  # CNN1D's: W&B records the number the run used
    train(cfg)
    assert wandb.run is None  # finished: a next run in this process gets its own

    (run_dir,) = offline_runs(output_dir)
    run = read_wandb_run(run_dir)
    assert run["exit_code"] == 0
    assert run["group"] == ""  # a single run belongs to no sweep
    assert run["job_type"] == "train"
    assert {k: v for k, v in run["config"].items() if k not in ("_wandb", "strategy")} == resolved
    assert run["config"]["strategy"] == {
        "name": "uniform",
        "class": "adaptls.smoothing.uniform.UniformSmoothing",
        "schedule": "constant",
        "epsilon": cfg.smoothing.epsilon,
        "convention": cfg.smoothing.convention,
    }
    assert {
        "val/nll": ["min"],
        "val/ece": ["min"],
        "val/acc": ["max"],
        "test/*": ["last"],
    }.items() <= run["metrics"].items()

    metrics = json.loads((output_dir / "metrics.json").read_text())
    for name, best in (("val/nll", min), ("val/ece", min), ("val/acc", max)):
        logged = [h[name] for h in run["history"] if name in h]
        assert len(logged) == 4  # three epochs, then the evaluated checkpoint's validate
        kept = "min" if best is min else "max"
        assert run["summary"][name] == {kept: pytest.approx(best(logged), rel=1e-6)}, name
        assert math.isclose(run["summary"][f"evaluated/{name}"], metrics["val"][name], rel_tol=1e-6)
    assert {"test/acc", "test/ece", "test/nll"} <= set(metrics["test"])
    for name, value in metrics["test"].items():
        assert math.isclose(run["summary"][name], value, rel_tol=1e-6), name

    # the figures: images in the history (W&B flattens an image's fields into
    # "<key>/<field>"), their files in the run's files/
    images = {
        key[: -len("/_type")]: row[key.replace("/_type", "/path")]
        for row in run["history"]
        for key, value in row.items()
        if key.endswith("/_type") and value == "image-file"
    }
    assert "test/reliability" in images
    for path in images.values():
        assert (run_dir / "files" / path).is_file()


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
        assert run["job_type"] == "study"


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


@pytest.mark.parametrize(
    ("overrides", "job_type"),
    [((), "train"), (("hparams_search=epsilon",), "tune")],
    ids=["single-run", "hparams-search"],
)
def test_the_job_type_says_what_the_run_is_for(compose_train, tmp_path, overrides, job_type):
    """train for a single run, tune for a job of hparams_search (a multirun's other jobs are
    study: the multirun test above)."""
    cfg = compose_train(*overrides, output_dir=tmp_path, hydra=True)
    assert cfg.logger.wandb.job_type == job_type
