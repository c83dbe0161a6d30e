"""Resuming with a config whose learning-rate schedule differs from the checkpoint's is
refused before any data is loaded (adaptls.run.resume_schedule): Lightning would restore the
checkpoint's schedule and silently run it (cosine past its T_max goes back up)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from adaptls.run.config import ConfigError
from adaptls.train import build, train


def _trained(compose_train, output_dir: Path, *overrides: str) -> Path:
    """A real run's last checkpoint."""
    cfg = compose_train(*overrides, "logger=none", output_dir=output_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    return output_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_resuming_cosine_with_another_max_epochs_is_refused(compose_train, tmp_path, small, tiny):
    run = tmp_path / "run"
    last = _trained(compose_train, run, *small, *tiny, "trainer.max_epochs=2")
    before = sorted(run.rglob("*"))

    longer = compose_train(
        *small, *tiny, "trainer.max_epochs=4", "ckpt_path=last", "logger=none", output_dir=run
    )
    with pytest.raises(ConfigError) as error:
        build(longer)
    assert str(error.value) == (
        f"ckpt_path: the checkpoint {last} was trained with another learning-rate schedule "
        "(scheduler.T_max: checkpoint 2, config 4); resuming restores the checkpoint's "
        "schedule, so the run would not follow this config (cosine past its T_max takes the "
        "rate back up). Resume with the checkpoint's settings (trainer.max_epochs=2), or "
        "start a new run without ckpt_path"
    )
    assert sorted(run.rglob("*")) == before  # refused before anything was written

    # the same file named explicitly; and the same schedule resumes
    explicit = compose_train(
        *small, *tiny, "trainer.max_epochs=3", f"ckpt_path='{last}'", "logger=none", output_dir=run
    )
    with pytest.raises(ConfigError, match=r"scheduler\.T_max: checkpoint 2, config 3"):
        build(explicit)
    same = compose_train(
        *small, *tiny, "trainer.max_epochs=2", "ckpt_path=last", "logger=none", output_dir=run
    )
    build(same)


@pytest.mark.slow
def test_only_settings_the_restored_state_overrides_are_compared(
    compose_train, tmp_path, small, tiny
):
    """MultiStepLR does not depend on the run's length: a longer run resumes. Its milestones
    are restored from the checkpoint, so changing them is refused, named with both values."""
    run = tmp_path / "run"
    steps = ["scheduler=multistep", "scheduler.milestones=[1]"]
    _trained(compose_train, run, *small, *tiny, *steps, "trainer.max_epochs=2")
    resume = [*small, *tiny, "scheduler=multistep", "ckpt_path=last", "logger=none"]
    build(
        compose_train(*resume, "scheduler.milestones=[1]", "trainer.max_epochs=5", output_dir=run)
    )
    with pytest.raises(ConfigError) as error:
        build(compose_train(*resume, "scheduler.milestones=[1,3]", output_dir=run))
    assert "(scheduler.milestones: checkpoint [1], config [1, 3])" in str(error.value)
    assert "Resume with the checkpoint's settings (scheduler.milestones=[1])" in str(error.value)
