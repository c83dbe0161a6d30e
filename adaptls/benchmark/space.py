"""Search spaces in the Optuna sweeper's syntax, as Optuna distributions.

``interval(a, b)`` is uniform on [a, b] (integers when both ends are), ``tag(log,
interval(a, b))`` log-uniform, ``choice(x, y, ...)`` and ``range(a, b[, step])``
categorical-like, a plain value fixed: what ``hparams_search=epsilon`` reads through
hydra-optuna-sweeper, parsed here with Hydra's public override parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntLogUniformDistribution,
    IntUniformDistribution,
    LogUniformDistribution,
    UniformDistribution,
)


def distributions(
    space: Mapping[str, str],
) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """(key -> distribution for each swept key, key -> value for each fixed one)."""
    parser = OverridesParser.create()
    swept: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for override in parser.parse_overrides([f"{k}={v}" for k, v in space.items()]):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed[key] = override.value()
            continue
        swept[key] = _distribution(key, override.value(), override)
    return swept, fixed


def _distribution(key: str, value: Any, override: Any) -> BaseDistribution:
    if isinstance(value, IntervalSweep):
        ints = isinstance(value.start, int) and isinstance(value.end, int)
        if "log" in value.tags:
            if ints:
                return IntLogUniformDistribution(int(value.start), int(value.end))
            return LogUniformDistribution(value.start, value.end)
        if ints:
            return IntUniformDistribution(int(value.start), int(value.end))
        return UniformDistribution(value.start, value.end)
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        return CategoricalDistribution(list(override.sweep_iterator()))
    raise ValueError(
        f"search space {key}={override.input_line!r}: not interval(...), tag(log, interval(...)), "
        "choice(...) or range(...)"
    )
