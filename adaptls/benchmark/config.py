"""The benchmark's settings: ``conf/benchmark.yaml`` with ``key=value`` overrides, checked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adaptls.benchmark.runs import RUNNERS
from adaptls.train import CONFIG_DIR

DIRECTIONS = ("minimize", "maximize")


class BenchmarkError(ValueError):
    """A bad benchmark setting (named, with what is allowed), raised before any run."""


def load_config(overrides: Sequence[str] = (), config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """``conf/benchmark.yaml`` merged with dotlist ``overrides`` (``budget.trials=2``,
    ``methods=[none,uniform]``), interpolations resolved, then checked."""
    base = OmegaConf.load(Path(config_dir) / "benchmark.yaml")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise BenchmarkError(f"overrides are key=value, got {bad[0]!r}")
    unknown = [
        o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0].split(".")[0] not in base
    ]
    if unknown:
        raise BenchmarkError(
            f"unknown benchmark setting {unknown[0]!r}; allowed: {', '.join(base.keys())}"
        )
    cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
    OmegaConf.resolve(cfg)
    check_config(cfg, Path(config_dir))
    return cfg


def check_config(cfg: DictConfig, config_dir: Path) -> None:
    """Every setting names something that exists; budgets are positive integers."""
    _option(config_dir, "data", cfg.setting, "setting")
    methods = list(cfg.methods)
    if not methods or len(set(methods)) != len(methods):
        raise BenchmarkError(f"methods must be distinct smoothing options, got {methods}")
    for method in methods:
        _option(config_dir, "smoothing", method, "method")
    if cfg.baseline not in methods:
        raise BenchmarkError(f"baseline {cfg.baseline!r} must be one of methods {methods}")
    if cfg.runner not in RUNNERS:
        raise BenchmarkError(f"runner must be one of {RUNNERS}, got {cfg.runner!r}")
    if cfg.direction not in DIRECTIONS:
        raise BenchmarkError(f"direction must be one of {DIRECTIONS}, got {cfg.direction!r}")
    for key in ("trials", "seeds", "epochs"):
        value = cfg.budget[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BenchmarkError(f"budget.{key} must be an int >= 1, got {value!r}")
    if cfg.final_seed_start <= cfg.search_seed < cfg.final_seed_start + cfg.budget.seeds:
        raise BenchmarkError(
            f"search_seed {cfg.search_seed} is among the stage-2 seeds "
            f"({cfg.final_seed_start}..{cfg.final_seed_start + cfg.budget.seeds - 1}): "
            "stage 2 must use seeds never used in stage 1"
        )


def _option(config_dir: Path, group: str, name: Any, what: str) -> None:
    options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
    if name not in options:
        raise BenchmarkError(
            f"{what} {name!r} is not a {group} option; allowed: {', '.join(options)}"
        )
