"""Every hardware option composes; launchers tie tasks to devices; the search runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from resilience_support import run_train

from adaptls.train import CONFIG_DIR


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def test_gpu_trainer_takes_a_precision() -> None:
    cfg = _compose("trainer=gpu", "trainer.precision=bf16-mixed")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.devices == 1


def test_ddp_trainer_sets_devices_nodes_and_sync_batchnorm() -> None:
    cfg = _compose("trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2")
    assert (cfg.trainer.strategy, cfg.trainer.devices, cfg.trainer.num_nodes) == ("ddp", 8, 2)
    assert cfg.trainer.sync_batchnorm is True


def test_ddp_cpu_is_two_gloo_processes() -> None:
    cfg = _compose("trainer=ddp_cpu")
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy) == ("cpu", 2, "ddp")


def test_slurm_launcher_ties_tasks_and_gpus_to_the_trainer() -> None:
    cfg = _compose(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=60",
        hydra=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert (launcher.partition, launcher.timeout_min) == ("gpu", 60)
    assert launcher.array_parallelism > 0


@pytest.mark.parametrize("strategy", ["uniform", "confidence", "class_frequency", "online", "none"])
def test_epsilon_search_has_a_space_for_every_strategy(strategy: str) -> None:
    cfg = _compose("hparams_search=epsilon", f"smoothing={strategy}", hydra=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.params, strategy
    assert cfg.hydra.sweeper.sampler.seed == cfg.seed
    for key in cfg.hydra.sweeper.params:
        assert key.split(".")[0] in ("smoothing", "optimizer"), key


def test_plain_multirun_has_no_search_space() -> None:
    cfg = _compose("smoothing=uniform", hydra=True)
    assert not cfg.hydra.sweeper.get("params")


@pytest.mark.slow
def test_three_trial_search_writes_its_best_parameters(tmp_path: Path) -> None:
    run_train(
        tmp_path / "search",
        "hparams_search=epsilon",
        "smoothing=uniform",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "logger=none",
        multirun=True,
    )
    result = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"smoothing.epsilon"}
    assert 0.0 <= result["best_params"]["smoothing.epsilon"] <= 0.4
    assert len(list((tmp_path / "search").glob("*/metrics.json"))) == 3
