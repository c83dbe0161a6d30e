"""Validation of datamodule hyperparameters: each error names the parameter, the bad value
and what is allowed, so a bad Hydra override fails at construction with a useful message."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """An int (not a bool) >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    """A finite real number >= ``minimum`` (> ``minimum`` when ``strict``)."""
    relation = ">" if strict else ">="
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """A number in the open interval (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of the ``allowed`` strings."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def check_bool(name: str, value: Any) -> bool:
    """A real bool: a stray string such as ``"false"`` would otherwise be truthy."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value
