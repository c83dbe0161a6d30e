"""A tracker that cannot start never costs the run: it trains and writes metrics.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from resilience_support import TINY, metrics_of, run_train

pytestmark = [pytest.mark.slow, pytest.mark.wandb]

ONE_EPOCH = [*TINY, "trainer.max_epochs=1", "logger=wandb"]


def test_bad_wandb_mode_warns_once_and_the_run_completes(tmp_path: Path) -> None:
    # WANDB_MODE would override the config's mode: unset it for this run.
    proc = run_train(
        tmp_path / "run", *ONE_EPOCH, "+logger.wandb.mode=bogus", env={"WANDB_MODE": None}
    )
    output = proc.stdout + proc.stderr  # Hydra logs to stdout
    warnings = [line for line in output.splitlines() if "could not start" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "WandbLogger" in warnings[0] and "training continues" in warnings[0]
    assert "bogus" in output
    assert 0.0 <= metrics_of(tmp_path / "run")["test/acc"] <= 1.0


def test_unwritable_wandb_directory_does_not_stop_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    run_train(tmp_path / "run", *ONE_EPOCH, f"logger.wandb.save_dir={blocker}/wandb")
    assert 0.0 <= metrics_of(tmp_path / "run")["test/acc"] <= 1.0
