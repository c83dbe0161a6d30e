"""Config helpers: instantiate a config group with errors that name the offending key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


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


def _explain(key: str, node: Any, err: Exception) -> str:
    cause = (err.__cause__ or err) if isinstance(err, InstantiationException) else err
    message = str(cause.args[0]) if getattr(cause, "args", None) else str(cause)
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


if not OmegaConf.has_resolver("sweep_group"):
    OmegaConf.register_new_resolver("sweep_group", sweep_group)
