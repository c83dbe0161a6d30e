"""Stage 1: each method's search space, searched by seeded TPE on the validation split.

Every method gets the same number of trials, each a full run of ``adaptls.train`` at the
same training seed (``search_seed``), the same data and epochs; the trial's value is the
run's validation ``objective`` on its last epoch. Trials are recorded one JSON line each
(``<out>/search/<method>/trials.jsonl``) as they finish. The sampler is reseeded before
each trial from (``search_seed``, trial number) and sees the recorded trials, so a search
restarted after a kill asks exactly the configurations the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import optuna
except ImportError as err:  # the `search` extra
    raise ImportError(
        f"adaptls.benchmark needs Optuna ({err}): pip install 'adaptls[search]'"
    ) from err
from omegaconf import DictConfig, OmegaConf

from adaptls.benchmark import runs, space
from adaptls.benchmark.config import BenchmarkError
from adaptls.run.config import strategy_search_space
from adaptls.train import CONFIG_DIR

SEARCH = "epsilon"  # conf/search_space/<SEARCH>/<method>.yaml, as hparams_search=epsilon


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]  # dotted train override -> value
    value: float | None  # None: the run failed or its objective was not finite


def search_space(method: str, config_dir: str | Path = CONFIG_DIR) -> dict[str, str]:
    """The method's search space as sweeper expressions: its yaml, else its class's."""
    path = Path(config_dir) / "search_space" / SEARCH / f"{method}.yaml"
    if path.is_file():
        return {str(k): str(v) for k, v in OmegaConf.to_container(OmegaConf.load(path)).items()}
    target = OmegaConf.load(Path(config_dir) / "smoothing" / f"{method}.yaml").get("_target_")
    space = strategy_search_space(target)
    if not space:
        raise BenchmarkError(
            f"method {method!r} has no search space: write conf/search_space/{SEARCH}/"
            f"{method}.yaml or declare search_space in its class"
        )
    return space


def base_overrides(cfg: DictConfig, method: str, seed: int) -> list[str]:
    """What every run of ``method`` shares: data, strategy, seed, epochs, the last-epoch
    rule, no logger, no progress bar, then the benchmark's own ``overrides``."""
    return [
        f"data={cfg.setting}",
        f"smoothing={method}",
        f"seed={seed}",
        f"trainer.max_epochs={cfg.budget.epochs}",
        "eval_checkpoint=last",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *[str(o) for o in cfg.overrides],
    ]


def read_trials(path: Path) -> list[Trial]:
    if not path.is_file():
        return []
    return [Trial(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def search(cfg: DictConfig, method: str, log: Callable[[str], Any] = print) -> list[Trial]:
    """Run (or finish) the method's ``budget.trials`` trials; returns all of them."""
    distributions, fixed = space.distributions(search_space(method))
    folder = Path(cfg.out) / "search" / method
    journal = folder / "trials.jsonl"
    trials = read_trials(journal)
    study = optuna.create_study(direction=cfg.direction)
    for trial in trials:
        _replay(study, trial, distributions)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for number in range(len(trials), cfg.budget.trials):
        study.sampler = optuna.samplers.TPESampler(
            seed=cfg.search_seed * 100_003 + number, n_startup_trials=cfg.startup_trials
        )
        asked = study.ask(distributions)
        params = {**fixed, **asked.params}
        overrides = base_overrides(cfg, method, cfg.search_seed)
        overrides += [f"{k}={_literal(v)}" for k, v in params.items()]
        try:
            record = runs.run(overrides, folder / f"trial_{number}", log, cfg.runner)
            value = (record.get("val") or {}).get(cfg.objective)
        except runs.RunFailed as err:
            log(f"  trial {number} of {method} failed: {err}")
            value = None
        if value is not None and not math.isfinite(value):
            value = None
        if value is None:
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(asked, value)
        trial = Trial(number, params, value)
        with journal.open("a") as f:
            f.write(json.dumps(trial.__dict__) + "\n")
        trials.append(trial)
    if all(t.value is None for t in trials):
        raise BenchmarkError(f"every trial of {method!r} failed (see {folder})")
    return trials


def best(trials: list[Trial], direction: str) -> Trial:
    """The trial with the best value (the first of equals)."""
    done = [t for t in trials if t.value is not None]
    sign = 1.0 if direction == "minimize" else -1.0
    return min(done, key=lambda t: (sign * t.value, t.number))


def _replay(study: optuna.Study, trial: Trial, distributions: dict[str, Any]) -> None:
    params = {k: v for k, v in trial.params.items() if k in distributions}
    state = optuna.trial.TrialState.FAIL if trial.value is None else None
    with warnings.catch_warnings():  # create_trial/add_trial: "experimental" in optuna 2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        frozen = optuna.trial.create_trial(
            params=params,
            distributions={k: distributions[k] for k in params},
            value=trial.value,
            **({"state": state} if state is not None else {}),
        )
        study.add_trial(frozen)


def _literal(value: Any) -> str:
    """A value as a Hydra override writes it (floats in full: repr round-trips)."""
    return repr(value) if isinstance(value, float) else str(value)
