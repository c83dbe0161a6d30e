"""Text classification end to end: the CLI with the default callbacks on data=text_cls
model=text_cnn, and every smoothing strategy for a few steps on it."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from adaptls.train import CONFIG_DIR, train

STRATEGIES = sorted(p.stem for p in (Path(CONFIG_DIR) / "smoothing").glob("*.yaml"))
TEXT = ["data=text_cls", "model=text_cnn", "optimizer.lr=0.002"]


@pytest.mark.slow
def test_the_cli_trains_a_text_classifier_with_the_default_callbacks(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        *TEXT,
        "logger=csv",  # every default callback runs (the LR monitor needs a logger)
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=40",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Epoch 1" in result.stdout + result.stderr  # the progress bar was on
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["data"]["corpus"] == "emoji_lang"
    assert metrics["config"]["model"]["vocab_size"] == metrics["config"]["data"]["vocab_size"]
    # 80 steps of 64 names: far above chance (1/14) on unseen emoji, not yet converged
    assert 0.4 < metrics["test"]["test/acc"] < 1.0, metrics["test"]
    assert math.isfinite(metrics["test"]["test/ts/ece"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert any((run_dir / "plots").glob("*.png"))
    assert "| test |" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_trains_on_text(compose_train, tiny, tmp_path, name):
    cfg = compose_train(
        *TEXT, *tiny, f"smoothing={name}", "logger=none", "model.width=16",
        "model.channels=8", output_dir=tmp_path,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["strategy"]["name"] == name
    for key in ("test/acc", "test/ece", "test/nll", "val/nll"):
        split = key.split("/")[0]
        assert math.isfinite(metrics[split][key]), (key, metrics[split][key])
