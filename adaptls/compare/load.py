"""Read runs: every ``metrics.json`` below some directories, with its Hydra record."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class CompareError(ValueError):
    """Bad input to a comparison: no runs, unknown metric or key."""


class SkippedRunWarning(UserWarning):
    """A ``metrics.json`` that could not be read; the comparison goes on without it."""


@dataclass(frozen=True)
class Run:
    """One finished run, as its output directory records it."""

    path: Path  # the run's output directory
    strategy: str
    seed: Any
    metrics: dict[str, float]  # val/* and test/*; missing or non-finite values left out
    config: dict[str, Any]  # resolved config, flattened to dotted keys
    choices: dict[str, str]  # config group -> chosen option (from .hydra/hydra.yaml)
    overrides: dict[str, str] | None  # from .hydra/overrides.yaml; None if absent
    # Mean epsilon the strategy applied over training (schedules included); None if the
    # run does not report it (older runs, losses that are not soft-target CEs).
    applied_epsilon: float | None = None
    evaluation: str | None = None  # which checkpoint the metrics are from: last / best

    def value(self, key: str) -> Any:
        """The run's value of a dotted config key, a group's option, or None."""
        if key == "strategy":
            return self.strategy
        if key in self.config:
            return self.config[key]
        if key in self.choices:
            return self.choices[key]
        return (self.overrides or {}).get(key)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run whose ``metrics.json`` lies below ``paths`` (searched recursively).

    A file that cannot be read or lacks ``test``/``config`` is skipped with a
    :class:`SkippedRunWarning` naming it. Raises :class:`CompareError` when a path does not
    exist or when no readable ``metrics.json`` is found.
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CompareError(f"no such file or directory: {', '.join(missing)}")
    files = sorted({f.resolve() for p in paths for f in _metrics_files(p)})
    runs = []
    for file in files:
        try:
            runs.append(_load_run(file))
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as err:
            warnings.warn(f"skipping {file}: {err}", SkippedRunWarning, stacklevel=2)
    if not runs:
        found = f" ({len(files)} unreadable)" if files else ""
        raise CompareError(
            f"no readable metrics.json found under {', '.join(map(str, paths))}{found}"
        )
    return runs


def _metrics_files(path: Path) -> Iterable[Path]:
    if path.is_file():
        return [path]
    return path.rglob("metrics.json")


def _load_run(file: Path) -> Run:
    record = json.loads(file.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for section in ("test", "config"):
        if not isinstance(record.get(section), dict):
            raise ValueError(f"no '{section}' section")
    run_dir = file.parent
    config = _flatten(record["config"])
    choices = _hydra_choices(run_dir / ".hydra" / "hydra.yaml")
    metrics = {
        name: float(value)
        for section in ("val", "test")
        for name, value in (record.get(section) or {}).items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }
    return Run(
        path=run_dir,
        strategy=_strategy_name(record, config, choices),
        seed=config.get("seed"),
        metrics=metrics,
        config=config,
        choices=choices,
        overrides=_overrides(run_dir / ".hydra" / "overrides.yaml"),
        applied_epsilon=_finite((record.get("strategy") or {}).get("smoothing/applied_epsilon")),
        evaluation=(record.get("evaluation") or {}).get("checkpoint"),
    )


def _finite(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return float(value) if ok else None


def _strategy_name(record: dict, config: dict[str, Any], choices: dict[str, str]) -> str:
    name = (record.get("strategy") or {}).get("name") or choices.get("smoothing")
    if name:
        return str(name)
    target = config.get("smoothing._target_")
    if not target:
        raise ValueError("no strategy name (strategy.name or config smoothing._target_)")
    return str(target).rsplit(".", 1)[-1]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            # Lists become tuples so that values can be grouped on.
            flat[dotted] = tuple(value) if isinstance(value, list) else value
    return flat


def _overrides(file: Path) -> dict[str, str] | None:
    if not file.is_file():
        return None
    out = {}
    for item in yaml.safe_load(file.read_text()) or []:
        key, sep, value = str(item).partition("=")
        if sep:  # "~key" deletions carry no value
            out[key.lstrip("+~")] = value
    return out


def _hydra_choices(file: Path) -> dict[str, str]:
    if not file.is_file():
        return {}
    choices = ((yaml.safe_load(file.read_text()) or {}).get("hydra") or {}).get("runtime", {})
    return {k: str(v) for k, v in (choices.get("choices") or {}).items() if "/" not in k}
