"""Refuse a resume whose learning-rate schedule the config no longer describes.

Resuming restores the LR scheduler's whole ``state_dict`` from the checkpoint, its
constructor arguments included: a run first trained with ``trainer.max_epochs=3`` and
resumed with ``trainer.max_epochs=5`` keeps cosine's ``T_max=3``, so the learning rate
reaches 0 at epoch 3 and PyTorch's closed form takes it back up at epochs 4 and 5, while
the config (and ``metrics.json``) says ``T_max=5``. Lightning does this silently.

It is an error, not a warning: the resumed run would follow a schedule nobody asked for,
its recorded config would not describe it, and a warning scrolls away under the progress
bar while the run spends hours on it. The check runs before any data is loaded; only the
arguments that the restored state overrides are compared (for ``MultiStepLR`` a new
``max_epochs`` changes nothing and passes).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adaptls.run.config import ConfigError

# Constructor arguments that are not settings: the optimizer, the position in the schedule.
NOT_SETTINGS = frozenset({"self", "optimizer", "last_epoch", "verbose"})


def check_resume_schedule(
    cfg: DictConfig,
    checkpoint_path: str | os.PathLike[str],
    checkpoint: Mapping[str, Any],
    scheduler: Any,
) -> None:
    """Raise ConfigError when the scheduler settings of ``checkpoint`` (loaded from
    ``checkpoint_path``) differ from those of ``scheduler`` (built from
    ``cfg.scheduler``): each differing setting is named with both values, and what to do.
    A checkpoint without a scheduler state passes.
    """
    saved = _saved_scheduler_state(checkpoint)
    if saved is None:
        return
    settings = set(inspect.signature(type(scheduler).__init__).parameters) - NOT_SETTINGS
    current = scheduler.state_dict()
    changed = sorted(k for k in settings if k in saved and k in current and saved[k] != current[k])
    if not changed:
        return
    raw = OmegaConf.to_container(cfg.scheduler, resolve=False)
    differences = ", ".join(
        f"scheduler.{k}: checkpoint {_plain(saved[k])}, config {_plain(current[k])}"
        for k in changed
    )
    keep = " ".join(f"{_set_by(raw, k)}={_plain(saved[k])}" for k in changed)
    cosine = " (cosine past its T_max takes the rate back up)" if "T_max" in changed else ""
    raise ConfigError(
        f"ckpt_path: the checkpoint {checkpoint_path} was trained with another learning-rate "
        f"schedule ({differences}); resuming restores the checkpoint's schedule, so the run "
        f"would not follow this config{cosine}. "
        f"Resume with the checkpoint's settings ({keep}), or start a new run without ckpt_path"
    )


def _saved_scheduler_state(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first LR scheduler's state in a Lightning checkpoint, or None."""
    states = checkpoint.get("lr_schedulers")
    return states[0] if states and isinstance(states[0], dict) else None


def _set_by(raw: Any, key: str) -> str:
    """The config key a user sets for ``scheduler.<key>``: the referenced key where the
    value is a plain reference (cosine's ``T_max: ${trainer.max_epochs}``)."""
    value = raw.get(key) if isinstance(raw, dict) else None
    reference = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
    return reference.group(1) if reference else f"scheduler.{key}"


def _plain(value: Any) -> Any:
    """A value as a config would write it (a Counter of milestones as a sorted list)."""
    return sorted(value.elements()) if hasattr(value, "elements") else value
