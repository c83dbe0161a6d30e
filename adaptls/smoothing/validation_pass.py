"""What a strategy is told after a validation pass: :class:`ValidationPass`.

The names of the figures are defined here, once: the fields are the names the
calibration suite (:class:`adaptls.metrics.CalibrationSuite`) gives them, and
:meth:`ValidationPass.from_suite` picks them from its output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

Figure = float | Tensor  # a number, or a 0-d tensor (read without a host sync)


@dataclass(frozen=True)
class ClassFigures:
    """Per-class figures of a validation pass, rows grouped by their TRUE class; (K,) each,
    NaN for classes with no rows. ``confidence - acc`` is a class's calibration gap."""

    acc: Tensor
    confidence: Tensor  # mean top-1 probability of the class's rows
    count: Tensor


@dataclass(frozen=True)
class ValidationPass:
    """The synced figures of one validation pass *of fit*, handed to
    :meth:`~adaptls.smoothing.SmoothingStrategy.on_validation_end`.

    Only fit's validation passes exist for a strategy: the Lightning module makes no call
    for the sanity check nor for a later ``validate``/``test``, so evaluating a checkpoint
    never moves a strategy's state (no flag a strategy could forget to check).

    Fields: top-1 accuracy ``acc``, mean top-1 confidence ``confidence``, ``ece`` (15-bin
    default), ``nll``; ``classes`` per class (None where the caller has none); ``other``:
    every further figure of the suite by its name (``brier``, ``adaece``, ...).
    """

    acc: Figure
    confidence: Figure
    ece: Figure = math.nan
    nll: Figure = math.nan
    classes: ClassFigures | None = None
    other: Mapping[str, Figure] = field(default_factory=dict)

    @classmethod
    def from_suite(
        cls, values: Mapping[str, Figure], per_class: Mapping[str, Tensor] | None = None
    ) -> ValidationPass:
        """From ``CalibrationSuite.compute()`` (names without a ``val/`` prefix) and its
        ``per_class()``."""
        named = {f.name for f in fields(cls)} - {"classes", "other"}
        missing = {"acc", "confidence"} - set(values)
        if missing:
            raise KeyError(f"a validation pass needs {sorted(missing)}; got {sorted(values)}")
        classes = None if per_class is None else ClassFigures(**_pick(per_class, ClassFigures))
        return cls(
            **{k: v for k, v in values.items() if k in named},
            classes=classes,
            other={k: v for k, v in values.items() if k not in named},
        )


def _pick(values: Mapping[str, Any], kind: type) -> dict[str, Any]:
    names = [f.name for f in fields(kind)]
    missing = [n for n in names if n not in values]
    if missing:
        raise KeyError(f"{kind.__name__} needs {missing}; got {sorted(values)}")
    return {n: values[n] for n in names}
