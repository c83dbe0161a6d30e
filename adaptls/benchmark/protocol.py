"""The three stages, end to end, resumable: search, retrain on fresh seeds, report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adaptls.benchmark import runs
from adaptls.benchmark.config import BenchmarkError
from adaptls.benchmark.report import write_report
from adaptls.benchmark.search import base_overrides, best, search, search_space


def final_seeds(cfg: DictConfig) -> list[int]:
    return list(range(cfg.final_seed_start, cfg.final_seed_start + cfg.budget.seeds))


def retrain(
    cfg: DictConfig, method: str, params: dict[str, Any], log: Callable = print
) -> dict[int, dict]:
    """Stage 2: the chosen configuration at every fresh seed; seed -> metrics.json record.

    The configuration is recorded (``<out>/final/<method>/chosen.json``); a benchmark
    resumed with a different one (another budget) refuses to mix their runs."""
    folder = Path(cfg.out) / "final" / method
    folder.mkdir(parents=True, exist_ok=True)
    chosen = folder / "chosen.json"
    if chosen.is_file() and json.loads(chosen.read_text()) != params:
        raise BenchmarkError(
            f"{folder} holds runs of another configuration of {method} "
            f"({chosen.read_text().strip()}, now {json.dumps(params)}): choose another out="
        )
    chosen.write_text(json.dumps(params))
    records = {}
    for seed in final_seeds(cfg):
        overrides = base_overrides(cfg, method, seed)
        overrides += [
            f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
        ]
        records[seed] = runs.run(overrides, folder / f"seed_{seed}", log, cfg.runner)
    return records


def benchmark(cfg: DictConfig, command: str, log: Callable = print) -> Path:
    """Run (or finish) the whole protocol for ``cfg``; returns the report's path."""
    chosen, results = {}, {m: {} for m in cfg.metrics}
    # method by method (search, then retrain): an interrupted benchmark has whole methods
    # done, which a restart with fewer methods reports at once
    for method in cfg.methods:
        log(f"stage 1: {method}, {cfg.budget.trials} trials")
        trials = search(cfg, method, log)
        top = best(trials, cfg.direction)
        chosen[method] = {
            "params": top.params,
            "value": top.value,
            "trials": len(trials),
            "failed": sum(t.value is None for t in trials),
            "space": search_space(method),
        }
        log(f"stage 2: {method} on seeds {final_seeds(cfg)}")
        for seed, record in retrain(cfg, method, top.params, log).items():
            for metric in cfg.metrics:
                value = (record.get("test") or {}).get(metric)
                if value is not None:
                    results[metric].setdefault(method, {})[seed] = float(value)
    path = write_report(cfg, results, chosen, command)
    log(f"stage 3: report written to {path}")
    return path
