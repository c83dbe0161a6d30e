"""Every registered strategy (the registry's axis, combinations.py) under trainer=ddp_cpu
with the default config (progress bar, checkpointing, W&B offline, every default callback),
2 epochs: a hang fails the test and names the strategy instead of eating CI's time."""

from __future__ import annotations

import json
import subprocess

import pytest
from combinations import strategies

# Two epochs of the default experiment take ~20 s per run on 2 busy cores; a run that
# has not finished after this long is stuck (a collective no other rank joins).
HANG_S = 300


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.parametrize("name", strategies())
def test_every_strategy_finishes_under_ddp_cpu_with_the_default_callbacks(name, run_cli, tmp_path):
    run_dir = tmp_path / "run"
    try:
        result = run_cli(
            "trainer=ddp_cpu",
            f"smoothing={name}",
            "trainer.max_epochs=2",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
            timeout=HANG_S,
        )
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or "")[-3000:]
        pytest.fail(f"smoothing={name} under trainer=ddp_cpu hung for {HANG_S} s:\n{tail}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"smoothing={name}: {output[-4000:]}"
    assert "Epoch 1" in output  # the progress bar was on
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["strategy"]["name"] == name
    assert metrics["evaluation"]["checkpoint"] == "last"
    assert metrics["evaluation"]["epoch"] == 1
