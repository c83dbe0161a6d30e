"""Short CPU runs, one per strategy: metrics.json, the returned metric, the closing table,
the stateful strategy's hooks, and bit-identical metrics for a repeated seed."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from adaptls.train import CONFIG_DIR, train

STRATEGIES = sorted(p.stem for p in (Path(CONFIG_DIR) / "smoothing").glob("*.yaml"))
HEADLINE = ("acc", "ece", "nll", "brier", "adaece", "cw_ece", "mce")


def run(compose_train, output_dir: Path, *overrides: str) -> dict[str, Any]:
    """Train in-process; the config, the return value, stdout and metrics.json."""
    cfg = compose_train(*overrides, output_dir=output_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = train(cfg)
    return {
        "cfg": cfg,
        "resolved": OmegaConf.to_container(cfg, resolve=True),
        "result": result,
        "stdout": stdout.getvalue(),
        "threads": torch.get_num_threads(),
        "metrics": json.loads((output_dir / "metrics.json").read_text()),
    }


@pytest.fixture(scope="module")
def strategy_run(compose_train, tmp_path_factory, tiny, small):
    """``strategy_run(name)``: one short run per strategy, made on first use (CSV logger,
    so the LR monitor runs too); a strategy that fails to train fails only its own tests."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, dict[str, Any]] = {}

    def strategy_run(name: str) -> dict[str, Any]:
        if name not in done:
            overrides = (f"smoothing={name}", "logger=csv", *tiny, *small)
            done[name] = run(compose_train, root / name, *overrides)
        return done[name]

    return strategy_run


@pytest.mark.parametrize("name", STRATEGIES)
def test_metrics_json_holds_finite_metrics_config_and_strategy(strategy_run, name):
    cfg, metrics = strategy_run(name)["cfg"], strategy_run(name)["metrics"]
    for split in ("val", "test"):
        for metric in HEADLINE:
            value = metrics[split][f"{split}/{metric}"]
            assert isinstance(value, float) and math.isfinite(value), (split, metric, value)
        assert 0 <= metrics[split][f"{split}/acc"] <= 1
    assert all(v is not None for v in {**metrics["val"], **metrics["test"]}.values())
    assert metrics["config"] == strategy_run(name)["resolved"]
    assert "${" not in json.dumps(metrics["config"])  # resolved, not interpolations
    assert metrics["strategy"]["name"] == name
    for key, value in metrics["strategy"]["hparams"].items():
        assert cfg.smoothing.get(key, value) == value  # the configured hyperparameters
    assert Path(metrics["checkpoint"]).is_file()
    # the same evaluation rule for every strategy, by default the last epoch's weights
    assert metrics["evaluation"] == {"checkpoint": "last", "epoch": 0, "step": 2}
    applied = metrics["strategy"]["smoothing/applied_epsilon"]
    assert applied is None or 0.0 <= applied < 1.0


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_optimized_metric_is_returned_and_the_table_printed(strategy_run, name):
    done = strategy_run(name)
    result, cfg, metrics = done["result"], done["cfg"], done["metrics"]
    assert result == metrics["val"][cfg.optimized_metric]
    table = done["stdout"]
    assert "| val |" in table and "| test |" in table
    assert f"{metrics['test']['test/acc']:.4f}" in table
    assert "last checkpoint: epoch 0" in table
    assert "Test set: the model is " in table  # the direction and size of miscalibration


def test_best_checkpoint_evaluation_is_recorded(compose_train, tmp_path, tiny, small):
    done = run(
        compose_train, tmp_path / "best", "eval_checkpoint=best", "trainer.max_epochs=2",
        "logger=none", *tiny[1:], *small,
    )  # fmt: skip
    evaluation = done["metrics"]["evaluation"]
    assert evaluation["checkpoint"] == "best" and evaluation["epoch"] in (0, 1)
    assert Path(done["metrics"]["checkpoint"]).name == "best.ckpt"
    assert "best checkpoint: epoch" in done["stdout"]


def test_the_run_uses_the_configured_cpu_threads(
    strategy_run, compose_train, tmp_path, tiny, small
):
    assert strategy_run("uniform")["threads"] == 1  # the default
    two = run(compose_train, tmp_path / "two", "cpu_threads=2", "logger=none", *tiny, *small)
    assert two["threads"] == 2


def test_online_smoothing_learned_its_matrix_during_the_epoch(strategy_run):
    """OnlineSmoothing's S starts uniform; observe + on_epoch_end must have moved it."""
    online = strategy_run("online")
    summary = online["metrics"]["strategy"]
    rows = summary["S"]
    k = len(rows)
    assert k == online["cfg"].data.num_classes
    for row in rows:
        assert math.isclose(sum(row), 1.0, rel_tol=1e-5)
    moved = [r for r in rows if any(abs(p - 1 / k) > 1e-3 for p in r)]
    assert moved, "S is still uniform: the training hooks did not run"
    assert summary["smoothing/S_diag_mean"] > 1 / k  # a correct prediction weighs its class


def test_the_same_seed_gives_identical_metrics(strategy_run, compose_train, tmp_path, tiny, small):
    first = strategy_run("uniform")["metrics"]
    again = run(compose_train, tmp_path / "again", "smoothing=uniform", "logger=csv", *tiny, *small)
    assert again["metrics"]["val"] == first["val"]
    assert again["metrics"]["test"] == first["test"]
    other = run(
        compose_train,
        tmp_path / "other",
        "smoothing=uniform",
        "seed=1",
        "logger=none",
        *tiny,
        *small,
    )
    assert other["metrics"]["val"] != first["val"]  # the seed is what made them equal
