"""Strategies by name (``smoothing=<name>``): every named subclass of
:class:`~adaptls.smoothing.base.Strategy` (a soft-target strategy or a criterion)
registers itself on definition (its ``__init_subclass__`` calls :func:`register_strategy`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adaptls.smoothing.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
#: Every registered strategy by name: filled as strategy modules are imported
#: (``adaptls.smoothing`` imports all of its own; Hydra imports a config's ``_target_``).
#: A live, read-only view (``adaptls.smoothing.STRATEGIES``).
REGISTRY: Mapping[str, type[Strategy]] = MappingProxyType(_REGISTRY)


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Register ``cls`` under ``cls.name`` (done for every named subclass on definition).

    Two different classes may not share a name; the same class defined again (a module
    reloaded) replaces its earlier self.
    """
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(
            f"{cls.__qualname__}.name must be an identifier (its smoothing=<name>), got {name!r}"
        )
    known = _REGISTRY.get(name)
    if known is not None and _where(known) != _where(cls):
        raise ValueError(
            f"strategy name {name!r} is taken by {_where(known)}; {_where(cls)} needs another"
        )
    _REGISTRY[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
