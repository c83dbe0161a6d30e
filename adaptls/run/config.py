"""Config helpers: instantiate a config group with errors that name the offending key."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# "f() got an unexpected keyword argument 'epsilon'": an option the target does not take.
_UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '(\w+)'")
# Arguments the run passes itself (the data's shape to a model), not options of a config.
_BUILT_BY_RUN = ("input_shape", "num_classes", "params")


class ConfigError(ValueError):
    """A configuration value was rejected; the message names the key and what is allowed."""


def instantiate_group(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg.<key>)``, re-raising a rejected value as a ConfigError.

    Constructors validate their arguments and name the bad one (``epsilon must be in
    [0, 1), got 1.5``); here that name is prefixed with the config key, giving
    ``smoothing.epsilon must be in [0, 1), got 1.5``.
    """
    node = OmegaConf.select(cfg, key)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        raise ConfigError(_explain(key, node, err)) from err


def call_partial(cfg: DictConfig, key: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a ``_partial_`` built from ``cfg.<key>``; a rejected value becomes a ConfigError."""
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(_explain(key, OmegaConf.select(cfg, key), err)) from err


def chosen_option(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` this run uses (``text_lm`` for ``data=text_lm``): Hydra's
    record of the choice, else (a config composed without Hydra) the name of the class."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    return str(OmegaConf.select(cfg, f"{group}._target_", default=group)).rsplit(".", 1)[-1]


def accepted_arguments(target: Any) -> list[str]:
    """The keyword arguments ``target`` (a class or function) takes, those its ``__init__``
    passes on through ``**kwargs`` to its base classes' included, in declaration order."""
    owners = (
        [k for k in target.__mro__ if "__init__" in vars(k)] if isinstance(target, type) else []
    )
    functions = [k.__init__ for k in owners] or [target]
    names: list[str] = []
    parameters: list[inspect.Parameter] = []
    for function in functions:
        parameters = list(inspect.signature(function).parameters.values())
        names += [
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name != "self"
            and p.name not in names
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
    return [*names, "**" + next(p.name for p in parameters if p.kind is p.VAR_KEYWORD)]


def _explain(key: str, node: Any, err: Exception) -> str:
    cause = (err.__cause__ or err) if isinstance(err, InstantiationException) else err
    message = str(cause.args[0]) if getattr(cause, "args", None) else str(cause)
    unknown = _UNEXPECTED_ARGUMENT.search(message) if isinstance(cause, TypeError) else None
    if unknown and isinstance(node, DictConfig) and node.get("_target_"):
        target = hydra.utils.get_object(node._target_)
        allowed = [name for name in accepted_arguments(target) if name not in _BUILT_BY_RUN]
        return (
            f"{key}.{unknown.group(1)} is not an option of {node._target_.rsplit('.', 1)[-1]}; "
            f"its options: {', '.join(allowed)}"
        )
    first = message.split(" ", 1)[0]
    if isinstance(node, DictConfig) and first in node:
        return f"{key}.{message}"
    return f"{key}: {message}"


def sweep_group() -> str | None:
    """The W&B group of a multirun job: its sweep directory's name (None for single runs)."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir).name


def wandb_job_type() -> str:
    """The W&B job type of a run: ``tune`` (a job of ``hparams_search``, or a run that a W&B
    sweep's agent started), ``study`` (a job of any other multirun: an experiment's grid,
    seeds), ``train`` (a single run)."""
    if os.environ.get("WANDB_SWEEP_ID"):
        return "tune"
    if not HydraConfig.initialized():
        return "train"
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.runtime.choices.get("hparams_search"):
        return "tune"
    return "study" if hydra_cfg.mode == RunMode.MULTIRUN else "train"


def strategy_search_space(target: str | None) -> dict[str, str]:
    """The search space a strategy class declares (its ``search_space``), as sweeper
    params ``{"smoothing.<key>": "<expression>"}``: the default of ``hparams_search`` for a
    strategy without a ``conf/search_space/<search>/<name>.yaml``. Empty when the class
    declares none or ``target`` is None (Hydra resolves the node once before the strategy
    is known); :func:`check_search_space` then stops the sweep.
    """
    if target is None:
        return {}
    space = getattr(hydra.utils.get_class(target), "search_space", None) or {}
    return {f"smoothing.{key}": str(value) for key, value in space.items()}


def check_search_space() -> None:
    """Stop a hyperparameter search whose space is empty: every trial would train with the
    same values. A no-op outside a Hydra run."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    search = hydra_cfg.runtime.choices.get("hparams_search")
    if search and not hydra_cfg.sweeper.get("params"):
        name = hydra_cfg.runtime.choices.get("smoothing")
        raise ConfigError(
            f"hparams_search={search} has no search space for smoothing={name}: declare one in "
            f"the strategy's class (search_space = {{'epsilon': 'interval(0.0, 0.4)'}}, in the "
            f"Optuna sweeper's syntax) or write conf/search_space/{search}/{name}.yaml"
        )


if not OmegaConf.has_resolver("sweep_group"):
    OmegaConf.register_new_resolver("sweep_group", sweep_group)
if not OmegaConf.has_resolver("wandb_job_type"):
    OmegaConf.register_new_resolver("wandb_job_type", wandb_job_type)
if not OmegaConf.has_resolver("strategy_search_space"):
    OmegaConf.register_new_resolver("strategy_search_space", strategy_search_space)
