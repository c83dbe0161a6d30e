"""The W&B sweeps under sweeps/ are generated from the strategies' search spaces, up to
date, and every parameter of every sweep composes as the Hydra override the agent passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from adaptls.run.config import instantiate_group
from adaptls.run.wandb_sweep import COMMAND, parameter, render, sweeps
from adaptls.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "sweeps"
GENERATED = {path: render(path, config) for path, config in sweeps(Path(CONFIG_DIR)).items()}


def test_the_sweep_files_are_up_to_date():
    present = {str(p.relative_to(OUT)): p.read_text() for p in OUT.glob("*/*.yaml")}
    assert set(present) == set(GENERATED), "regenerate: python scripts/wandb_sweeps.py"
    stale = [p for p, text in GENERATED.items() if present[p] != text]
    assert not stale, f"out of date (python scripts/wandb_sweeps.py): {stale}"


def _ends(spec: dict) -> list[object]:
    """The values a parameter can take at its ends (the agent samples between them)."""
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return [spec["values"][0], spec["values"][-1]]
    return [spec["min"], spec["max"]]


@pytest.mark.parametrize("path", sorted(GENERATED))
def test_every_parameter_composes_as_a_hydra_override(path):
    """What ``${args_no_hyphens}`` passes (``key=value``, Python's str of the value) composes
    with conf/ and builds the strategy, at each end of every parameter's range."""
    config = yaml.safe_load((OUT / path).read_text())
    assert config["command"] == COMMAND
    params = config["parameters"]
    assert "smoothing" in params and len(params) > 2  # the strategy, its space, the logger
    for end in (0, -1):
        values = {key: _ends(spec)[end] for key, spec in params.items()}
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"{k}={v}" for k, v in values.items()])
        for key, value in values.items():
            if key != "smoothing":  # a group choice; the others are values
                assert OmegaConf.select(cfg, key) == value, key
        instantiate_group(cfg, "smoothing")  # the values are ones the strategy accepts


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("interval(0.0, 0.4)", {"distribution": "uniform", "min": 0.0, "max": 0.4}),
        (
            "tag(log, interval(0.1, 10.0))",
            {"distribution": "log_uniform_values", "min": 0.1, "max": 10.0},
        ),
        ("int(interval(1, 8))", {"distribution": "int_uniform", "min": 1, "max": 8}),
        ("choice(1, 5, 10)", {"values": [1, 5, 10]}),
        ("range(1, 7, 2)", {"values": [1, 3, 5]}),
        ("0.3", {"value": 0.3}),
    ],
)
def test_optuna_expressions_map_to_wandb_distributions(expression, expected):
    assert parameter("smoothing.x", expression) == expected
