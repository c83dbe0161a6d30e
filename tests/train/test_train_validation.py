"""A bad override fails before training, names the key and what is allowed, writes nothing.

``train`` builds (and so validates) every component before it loads data, trains or
starts a logger; the CLI turns the error into exit status 2 with the message in its log.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from adaptls.config import ConfigError
from adaptls.train import CONFIG_DIR, train

BAD_VALUES = {
    # override: fragments the message must contain
    "smoothing.epsilon=1.5": ["smoothing.epsilon", "[0, 1)", "1.5"],
    "data.imbalance_ratio=-3": ["data.imbalance_ratio", ">= 1", "-3"],
    "data.batch_size=0": ["data.batch_size", ">= 1", "0"],
    "model.dropout=2": ["model.dropout", "[0, 1)", "2"],
    "optimizer.lr=-1": ["optimizer", "-1"],
    "+smoothing.typo=1": ["smoothing", "typo"],
    "trainer.precision=bogus": ["trainer", "bogus"],
    "callbacks.model_checkpoint.save_top_k=-5": ["callbacks.model_checkpoint", "-5"],
    "cpu_threads=0": ["cpu_threads", ">= 1", "0"],
    "callbacks.temperature_scaling.bounds=[100,1]": [
        "callbacks.temperature_scaling.bounds",
        "0 < T_min < T_max",
        "[100, 1]",
    ],
    "callbacks.temperature_scaling.bounds=[0,1,2]": [
        "callbacks.temperature_scaling.bounds",
        "(T_min, T_max)",
        "[0, 1, 2]",
    ],
    "eval_checkpoint=first": ["eval_checkpoint", "last", "best", "'first'"],
}


def written(output_dir: Path) -> list[str]:
    if not output_dir.exists():
        return []
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*"))


@pytest.mark.parametrize("override", list(BAD_VALUES))
def test_a_bad_value_fails_before_training_naming_the_key(compose_train, tmp_path, override):
    output_dir = tmp_path / "run"
    cfg = compose_train(override, output_dir=output_dir)  # default logger: W&B offline
    with pytest.raises(ConfigError) as error:
        train(cfg)
    for fragment in BAD_VALUES[override]:
        assert fragment in str(error.value), f"{fragment!r} not in {str(error.value)!r}"
    assert written(output_dir) == []  # no checkpoint, no metrics.json, no wandb folder


def test_best_evaluation_without_a_checkpoint_callback_fails_before_training(
    compose_train, tmp_path
):
    output_dir = tmp_path / "run"
    cfg = compose_train(
        "eval_checkpoint=best", "callbacks.model_checkpoint=null", output_dir=output_dir
    )
    with pytest.raises(
        ConfigError, match=r"eval_checkpoint=best needs callbacks\.model_checkpoint"
    ):
        train(cfg)
    assert written(output_dir) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["smoothing.schedule=cosine", "trainer.max_epochs=-1", "+trainer.max_steps=50"],
        ["smoothing=self_distill", "trainer.max_epochs=null", "+trainer.max_steps=50"],
    ],
)
def test_a_run_of_unknown_length_fails_if_smoothing_needs_its_length(
    compose_train, tmp_path, overrides
):
    # Instead of silently treating the run as one epoch long (cosine at 0 after epoch 0).
    output_dir = tmp_path / "run"
    cfg = compose_train(*overrides, output_dir=output_dir)
    with pytest.raises(ConfigError, match=r"needs the run's length in epochs, got max_epochs="):
        train(cfg)
    assert written(output_dir) == []


@pytest.mark.parametrize("group", ["smoothing", "data"])
def test_an_unknown_option_fails_listing_the_available_ones(compose_train, tmp_path, group):
    with pytest.raises(MissingConfigException) as error:
        compose_train(f"{group}=nope", output_dir=tmp_path / "run")
    message = str(error.value)
    assert f"{group}/nope" in message
    for option in (p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")):
        assert option in message


@pytest.mark.slow
def test_the_cli_exits_with_status_2_and_writes_only_its_log(run_cli, tmp_path):
    """Through the console script, as a user types it."""
    run_dir = tmp_path / "run"
    script = shutil.which("adaptls-train", path=str(Path(sys.executable).parent))
    assert script is not None, "the console script adaptls-train is not installed"
    result = run_cli(
        "smoothing.epsilon=1.5", f"hydra.run.dir={run_dir}", cwd=tmp_path, program=[script]
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = "smoothing.epsilon must be a number in [0, 1), got 1.5"
    assert message in result.stdout + result.stderr
    assert message in (run_dir / "train.log").read_text()
    assert {p.name for p in run_dir.iterdir()} == {"train.log", ".hydra"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
