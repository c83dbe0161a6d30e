"""The combinations a user can ask for, generated from the registries.

No list here names a strategy, a schedule or a mixer: each axis is read, when the tests are
collected, from where the library registers them, so a new one joins every test of its
axes by being registered:

- strategies: :data:`adaptls.smoothing.STRATEGIES` (every named soft-target strategy and
  criterion);
- epsilon schedules: :data:`adaptls.smoothing.schedule.SCHEDULES`;
- mixers: the options of ``conf/mix`` (all but the one that does not mix);
- token-id data: the options of ``conf/data`` whose datamodule serves token ids;
- composers: strategies that take a ``base`` strategy (MDCA); stateful bases: strategies
  that declare state of their own (``add_state``) beyond the applied-epsilon record every
  strategy keeps.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import Tensor

from adaptls.mix import NoMix
from adaptls.smoothing import STRATEGIES, SmoothingStrategy, SoftTarget
from adaptls.smoothing import schedule as schedule_module
from adaptls.smoothing.base import constructor_hyperparameters
from adaptls.train import CONFIG_DIR

CONF = Path(CONFIG_DIR)
# The data facts a stateful strategy is set up with to show its declared state.
_FACTS: dict[str, Any] = {"num_classes": 4, "class_counts": [8, 4, 2, 1]}


def strategies() -> list[str]:
    """Every registered strategy (``smoothing=<name>``)."""
    return sorted(STRATEGIES)


def schedules() -> list[str]:
    """Every epsilon schedule (``smoothing.schedule=<name>``)."""
    return list(schedule_module.SCHEDULES)


def mixers(config_dir: Path = CONF) -> list[str]:
    """Every ``mix=<option>`` that mixes (the option whose target is NoMix does not)."""
    return sorted(
        p.stem for p in (config_dir / "mix").glob("*.yaml") if not issubclass(_target(p), NoMix)
    )


def token_id_data(config_dir: Path = CONF) -> list[str]:
    """Every ``data=<option>`` whose datamodule serves token ids (which do not mix)."""
    return sorted(
        p.stem
        for p in (config_dir / "data").glob("*.yaml")
        if getattr(_target(p), "token_ids", False)
    )


def linear_path() -> tuple[list[str], list[str]]:
    """(strategies that train through the fused linear loss, those that cannot)."""
    names = strategies()
    supported = [n for n in names if STRATEGIES[n]().limits.linear is None]
    return supported, [n for n in names if n not in supported]


def composers() -> list[str]:
    """Strategies built on a ``base`` strategy (the ``base`` constructor parameter)."""
    return [n for n in strategies() if "base" in constructor_hyperparameters(STRATEGIES[n])]


def own_state(name: str) -> set[str]:
    """The state ``name`` declares (``add_state``), built with its defaults and set up, beyond
    the record every strategy keeps (what a strategy declaring nothing holds)."""
    strategy = STRATEGIES[name]()
    strategy.setup(**_FACTS)
    plain = _DeclaresNothing()
    plain.setup(**_FACTS)
    return set(strategy.get_extra_state()) - set(plain.get_extra_state())


def stateful_bases() -> list[str]:
    """Strategies with state of their own that a composer can take as its base."""
    return [n for n in strategies() if n not in composers() and own_state(n)]


def strategy_x_schedule() -> list[tuple[str, str]]:
    return list(itertools.product(strategies(), schedules()))


def strategy_x_mixer(config_dir: Path = CONF) -> list[tuple[str, str]]:
    return list(itertools.product(strategies(), mixers(config_dir)))


def composer_x_stateful_base() -> list[tuple[str, str]]:
    return list(itertools.product(composers(), stateful_bases()))


def schedules_needing_the_run_length() -> list[str]:
    """Schedules whose factor depends on the run's length in epochs (by their defaults)."""
    return [s for s in schedules() if schedule_module.EpsilonSchedule(name=s).needs_length]


def strategies_needing_the_run_length() -> list[str]:
    return [n for n in strategies() if STRATEGIES[n]().limits.needs_run_length]


def mixer_x_token_id_data(config_dir: Path = CONF) -> list[tuple[str, str]]:
    return list(itertools.product(mixers(config_dir), token_id_data(config_dir)))


def _target(yaml: Path) -> type:
    """The class an option's yaml builds (an option without ``_target_`` extends the one its
    defaults list names in the same group, e.g. ``mnist1d_lt`` extends ``mnist1d``)."""
    cfg = OmegaConf.load(yaml)
    if "_target_" in cfg:
        return get_class(cfg["_target_"])
    (parent,) = (d for d in cfg.get("defaults", []) if d != "_self_")
    return _target(yaml.parent / f"{parent}.yaml")


class _DeclaresNothing(SmoothingStrategy, register=False):
    """One-hot targets and no state of its own: what every strategy records anyway."""

    def smoothing(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None):
        return SoftTarget(0.0)
