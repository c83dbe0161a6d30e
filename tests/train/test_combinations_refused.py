"""Combinations that cannot work fail at build, before anything is loaded or written, with
one line naming both parts and why (a ConfigError; the CLI exits with status 2) -- never a
traceback from inside a training step. The cases are generated from the registries
(:mod:`combinations`); the strategies that cannot train on several processes are refused
in test_train_validation.py (their refusal depends on a hyperparameter, not on the
strategy)."""

from __future__ import annotations

from pathlib import Path

import pytest
from combinations import (
    mixer_x_token_id_data,
    schedules_needing_the_run_length,
    strategies_needing_the_run_length,
)

from adaptls.run.config import ConfigError
from adaptls.train import train

# A run given only a number of steps: Lightning's max_epochs=-1.
STEPS_ONLY = ["trainer.max_epochs=-1", "+trainer.max_steps=50", "logger=none"]
# The language-model data at its smallest (the build refuses before the data is made).
TINY_LM = ["model=transformer_lm", "data.vocab_size=300", "data.context_length=16"]


def written(output_dir: Path) -> list[str]:
    if not output_dir.exists():
        return []
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*"))


def refusal(compose_train, output_dir: Path, *overrides: str) -> str:
    """The one-line ConfigError ``train`` raises for ``overrides``; nothing written."""
    cfg = compose_train(*overrides, output_dir=output_dir)
    with pytest.raises(ConfigError) as error:
        train(cfg)
    assert written(output_dir) == []
    message = str(error.value)
    assert "\n" not in message
    return message


def _model_for(data: str) -> list[str]:
    """A model that reads ``data`` (so the mixer, not the model, is what is refused)."""
    return {"text_lm": TINY_LM, "text_mt": ["model=transformer_mt"]}.get(data, ["model=text_cnn"])


@pytest.mark.parametrize(("mixer", "data"), mixer_x_token_id_data())
def test_a_mixer_refuses_token_ids_at_build(compose_train, tmp_path, mixer, data):
    message = refusal(
        compose_train, tmp_path / "run", f"mix={mixer}", f"data={data}", *_model_for(data)
    )
    assert message.startswith(f"mix={mixer} cannot mix data={data} (inputs (")
    assert message.endswith("this data yields token ids, which do not mix (use mix=none)")


@pytest.mark.parametrize("schedule", schedules_needing_the_run_length())
def test_a_schedule_refuses_a_run_of_unknown_length_at_build(compose_train, tmp_path, schedule):
    # Instead of silently treating the run as one epoch long (cosine at 0 after epoch 0).
    message = refusal(
        compose_train, tmp_path / "run", f"smoothing.schedule={schedule}", *STEPS_ONLY
    )
    assert message == (
        f"smoothing: schedule {schedule!r} needs the run's length in epochs, got "
        "max_epochs=-1: set trainer.max_epochs to a number >= 1"
    )


@pytest.mark.parametrize("name", strategies_needing_the_run_length())
def test_a_strategy_refuses_a_run_of_unknown_length_at_build(compose_train, tmp_path, name):
    message = refusal(compose_train, tmp_path / "run", f"smoothing={name}", *STEPS_ONLY)
    assert message.startswith("smoothing: ")
    assert message.endswith(
        " needs the run's length in epochs, got max_epochs=-1: set trainer.max_epochs to a "
        "number >= 1"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        [f"mix={mixer}", f"data={data}", *_model_for(data)]
        for mixer, data in mixer_x_token_id_data()[:1]
    ]
    + [[f"smoothing.schedule={s}", *STEPS_ONLY] for s in schedules_needing_the_run_length()[:1]],
    ids=["mix-x-token-ids", "schedule-x-unknown-length"],
)
def test_the_cli_says_one_line_and_exits_with_status_2(run_cli, tmp_path, overrides):
    run_dir = tmp_path / "run"
    result = run_cli(*overrides, "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    (line,) = [x for x in output.splitlines() if "invalid configuration: " in x]
    assert line.split("invalid configuration: ", 1)[1]  # the reason, on that line
    assert {p.name for p in run_dir.iterdir()} == {"train.log", ".hydra"}
