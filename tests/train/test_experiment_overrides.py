"""A command-line choice wins over an experiment's, and the experiment's sweep still sweeps.

``python -m adaptls.train experiment=E smoothing=X`` is one run (no experiment pins
``hydra.mode``) of E's setting with X's strategy; ``-m experiment=E`` runs E's
``hydra.sweeper.params``. Both are checked by composing conf/train.yaml as Hydra does for
the run, or for each job of the sweep (the basic sweeper's own split of the params).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from adaptls.run.config import instantiate_group
from adaptls.smoothing import Strategy
from adaptls.train import CONFIG_DIR

CONF = Path(CONFIG_DIR)
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# The groups a user picks an option of on the command line.
GROUPS = ("smoothing", "data", "model", "optimizer", "scheduler", "mix", "trainer")
# Sweep keys that choose the strategy of a job.
STRATEGY_KEYS = ("smoothing", "+arm", "paper_loss")


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_command_line_option_wins_over_the_experiment(compose_train, output_dir, experiment, group):
    chosen = compose_train(f"experiment={experiment}", output_dir=output_dir, hydra=True)
    assert chosen.hydra.mode is None, "a single run unless -m"
    mine = next(o for o in options(group) if o != chosen.hydra.runtime.choices[group])

    cfg = compose_train(
        f"experiment={experiment}", f"{group}={mine}", output_dir=output_dir, hydra=True
    )

    assert cfg.hydra.runtime.choices[group] == mine
    assert cfg.task_name == chosen.task_name  # still the experiment
    # the option as composed alone, but for the values the experiment sets in its group
    # (unresolved: an interpolation such as ${trainer.max_epochs} follows the experiment)
    alone = OmegaConf.to_container(compose_train(f"{group}={mine}", output_dir=output_dir)[group])
    node = OmegaConf.to_container(cfg[group])
    pinned = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").get(group) or {}
    for key, value in alone.items():
        if key not in pinned:
            assert node[key] == value, key
    if group == "smoothing":  # no experiment adds keys to a strategy: it builds
        assert set(cfg.smoothing) == set(alone)
        assert isinstance(instantiate_group(cfg, "smoothing"), Strategy)


def sweep_jobs(params: dict[str, str]) -> list[list[str]]:
    """The overrides of each job the basic sweeper launches for these params."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    (batch,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return batch


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_sweep_still_sweeps_its_strategies(compose_train, output_dir, experiment):
    cfg = compose_train(f"experiment={experiment}", output_dir=output_dir, hydra=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert params, f"{experiment} has no sweep"
    jobs = sweep_jobs(params)
    sizes = [len(str(value).split(",")) for value in params.values()]
    assert len(jobs) == len(set(map(tuple, jobs))) == math.prod(sizes)

    (key,) = [k for k in params if k in STRATEGY_KEYS]
    strategies = {}
    for value in str(params[key]).split(","):
        job = next(j for j in jobs if f"{key}={value}" in j)
        job_cfg = compose_train(f"experiment={experiment}", *job, output_dir=output_dir)
        strategies[value] = OmegaConf.to_container(job_cfg.smoothing)
        assert isinstance(instantiate_group(job_cfg, "smoothing"), Strategy)
    # every arm of the sweep trains a different strategy or different values
    for a, b in itertools.combinations(strategies, 2):
        assert strategies[a] != strategies[b], (a, b)


def test_cifar10_calibration_rows_are_the_papers_losses(compose_train, output_dir):
    """The four rows of Mukhoti et al. (2020); LS-0.05 in the e/K convention is 0.0556."""
    rows = {
        "ce": {"_target_": "adaptls.smoothing.NoSmoothing"},
        "ls": {"_target_": "adaptls.smoothing.UniformSmoothing", "epsilon": 0.0556},
        "fl3": {"_target_": "adaptls.smoothing.FocalLoss", "gamma": 3.0},
        "flsd53": {
            "_target_": "adaptls.smoothing.AdaptiveFocalLoss",
            "gamma": 3.0,
            "gamma_low": 5.0,
            "gamma_mid": 3.0,
        },
    }
    for row, expected in rows.items():
        cfg = compose_train(
            "experiment=cifar10_calibration", f"paper_loss={row}", output_dir=output_dir
        )
        assert expected.items() <= OmegaConf.to_container(cfg.smoothing).items(), row
    single = compose_train("experiment=cifar10_calibration", output_dir=output_dir)
    assert single.smoothing._target_ == rows["ce"]["_target_"]  # one run: the ce row


@pytest.mark.slow
def test_cli_smoothing_override_of_cifar10_calibration(run_cli, tmp_path):
    """The reported command: its strategy is the one asked for, in one run."""
    done = run_cli(
        "experiment=cifar10_calibration",
        "smoothing=focal",
        "--cfg",
        "job",
        "-p",
        "smoothing",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert OmegaConf.create(done.stdout)._target_ == "adaptls.smoothing.FocalLoss"
