r"""Epsilon schedules: a factor :math:`s(e) \in [0, 1]` on any strategy's epsilon, by epoch.

A strategy's target becomes :math:`(1 - s(e)\,\varepsilon_i)\,\mathrm{onehot} + s(e)\,\varepsilon_i u_i`:
the schedule scales whatever epsilon the strategy decides (a scalar, per class or per
sample) and leaves its prior alone, so every schedule composes with every strategy. With E
the run's number of epochs and e = 0, 1, ... the current epoch:

- ``constant``: :math:`s = 1`;
- ``warmup``: :math:`s = \min(1, e / W)`, linear from 0 at epoch 0 to 1 at epoch W
  (``epochs``; default E / 10, at least 1);
- ``cosine``: :math:`s = \tfrac12 (1 + \cos(\pi e / E))`, from 1 down to almost 0;
- ``step``: :math:`s = \gamma^{m(e)}`, m(e) = number of ``milestones`` <= e (default
  milestones at E/2 and 3E/4, ``gamma`` 0.1).

Configs give a name (``smoothing.schedule=cosine``) or a mapping with parameters
(``smoothing.schedule={name:step,milestones:[10,20],gamma:0.5}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("constant", "warmup", "cosine", "step")


@dataclass(frozen=True)
class EpsilonSchedule:
    """The factor s(epoch) applied to a strategy's epsilon (see the module docstring)."""

    name: str = "constant"
    epochs: int | None = None
    milestones: Sequence[int] | None = None
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {self.name!r}"
            )
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"schedule epochs must be an int >= 1, got {self.epochs!r}")
        if not 0.0 <= float(self.gamma) <= 1.0:
            raise ValueError(f"schedule gamma must be in [0, 1], got {self.gamma!r}")
        if self.milestones is not None and any(
            not isinstance(m, int) or m < 0 for m in self.milestones
        ):
            raise ValueError(f"schedule milestones must be ints >= 0, got {list(self.milestones)}")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | EpsilonSchedule | None) -> EpsilonSchedule:
        """A schedule from a name, a mapping ``{name: ..., **parameters}`` or None (constant)."""
        if spec is None:
            return cls()
        if isinstance(spec, EpsilonSchedule):
            return spec
        if isinstance(spec, str):
            return cls(name=spec)
        if isinstance(spec, Mapping):
            params = dict(spec)
            unknown = set(params) - {"name", "epochs", "milestones", "gamma"}
            if unknown:
                raise ValueError(
                    f"unknown schedule parameter(s) {sorted(unknown)}; allowed: "
                    "name, epochs (warmup), milestones and gamma (step)"
                )
            if "milestones" in params and params["milestones"] is not None:
                params["milestones"] = tuple(params["milestones"])
            return cls(**params)
        raise TypeError(f"schedule must be a name or a mapping, got {spec!r}")

    @property
    def needs_length(self) -> bool:
        """Whether s(epoch) depends on the run's length (cosine; warmup without ``epochs``;
        step without ``milestones``)."""
        return (
            self.name == "cosine"
            or (self.name == "warmup" and self.epochs is None)
            or (self.name == "step" and self.milestones is None)
        )

    def factor(self, epoch: int, max_epochs: int | None) -> float:
        """s(epoch) for a run of ``max_epochs`` epochs.

        Raises ``ValueError`` if the schedule needs the run's length and ``max_epochs`` is
        None or <= 0 (e.g. Lightning's -1 when only max_steps is set).
        """
        if self.needs_length and not (max_epochs is not None and max_epochs > 0):
            raise ValueError(
                f"schedule {self.describe()!r} needs the run's length in epochs, got "
                f"max_epochs={max_epochs!r}: pass set_epoch(epoch, max_epochs) a number >= 1 "
                "(trainer.max_epochs in a config)"
            )
        total = max_epochs if max_epochs and max_epochs > 0 else 1
        if self.name == "constant":
            return 1.0
        if self.name == "warmup":
            width = self.epochs or max(1, round(total / 10))
            return min(1.0, epoch / width)
        if self.name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
        milestones = self.milestones
        if milestones is None:
            milestones = (total // 2, (3 * total) // 4)
        return float(self.gamma) ** sum(epoch >= m for m in milestones)

    def describe(self) -> str | dict[str, Any]:
        """What a config would hold: the name, or the name and the parameters set."""
        params = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in (("epochs", self.epochs), ("milestones", self.milestones))
            if v is not None
        }
        if self.name == "step" and self.gamma != 0.1:
            params["gamma"] = self.gamma
        return {"name": self.name, **params} if params else self.name
