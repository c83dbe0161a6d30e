"""MDCA, the multi-class difference of confidence and accuracy (Hebbalaguppe et al.,
CVPR 2022), as an auxiliary term on top of any strategy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_nonnegative
from adaptls.smoothing.base import Strategy
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
)

BaseSpec = Strategy | str | Mapping[str, Any] | None


class MDCA(CalibrationLoss):
    r"""A base strategy's loss plus :math:`\beta` times the batch's MDCA:

    .. math:: \mathcal{L} = \mathcal{L}_{base} + \beta\, \frac{1}{K} \sum_{k=1}^{K}
              \Bigl| \frac{1}{N} \sum_i p_{ik} - \frac{1}{N} \sum_i [y_i = k] \Bigr|,

    :math:`p = \mathrm{softmax}(x_i)`, N the rows whose target is not ``ignore_index``
    (every batch statistic runs over them only; with none, MDCA is 0). ``beta`` = 1 (the
    authors' scripts for NLL+MDCA, LS+MDCA and FL+MDCA).

    Composition. ``base`` is the classification loss MDCA regularises:

    - ``None`` (``smoothing=mdca``): plain cross-entropy, i.e. the authors' NLL+MDCA;
    - a strategy's registered name (``smoothing.base=focal``), built with its defaults;
    - a mapping ``{"name": ..., **hyperparameters}`` (``smoothing.base={name: focal,
      gamma: 1.0}``: the authors' FL+MDCA; ``{name: uniform, ...}``: LS+MDCA, see below);
    - a strategy instance, e.g. another group's config placed under ``smoothing.base``
      (``+smoothing@smoothing.base=uniform``), which Hydra instantiates first.

    The base is a child module (its state is in this module's ``state_dict`` under
    ``base.``); every hook reaches it by construction (the
    :class:`~adaptls.smoothing.driver.StrategyDriver` visits the strategy tree: this
    strategy, then its base), and ``log_values`` reports its figures next to
    ``smoothing/mdca``. MDCA is a criterion: the target of its classification term, when
    the base has one, is ``soft_targets(mdca.base, ...)``. A base built here takes this strategy's ``ignore_index``; a given instance must agree.

    Reductions: MDCA is a statistic of the whole batch, not a sum over rows, so every
    counted row carries the same :math:`\beta\,\mathrm{MDCA}`: ``"none"`` is the base's
    rows plus that term (0 on ignored rows), ``"sum"`` their sum, ``"mean"`` the base's
    mean plus :math:`\beta\,\mathrm{MDCA}` (the reference's value). Under DDP the batch is
    each rank's own, as in the reference.

    Source: github mdca-loss/MDCA-Calibration ``solvers/loss.py`` (``MDCA`` and
    ``ClassficationAndMDCA``). Deliberate differences: ignored rows are dropped (the
    reference has no ``ignore_index``); its class loop is one vectorised reduction. Its
    LS+MDCA smooths with a/(K-1) on the other classes and 1 - a on the true one; ``uniform``
    here puts e/K on every class, so ``{name: uniform, epsilon: a * K / (K - 1)}`` is the
    same soft target.

    The epsilon ``schedule`` of this strategy scales beta (the base keeps its own).
    Figures: ``smoothing/mdca`` (the unweighted term of the last training batch),
    ``smoothing/beta`` and the base's.
    """

    name: ClassVar[str] = "mdca"

    def __init__(self, beta: float = 1.0, base: BaseSpec = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_nonnegative("beta", beta)
        self.base = _build_base(base, self.ignore_index)
        self._base_given = base is not None

    # ------------------------------------------------------------------ the loss
    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        base = self.base._flat_loss(x, y, indices, reduction)  # the base's own loss
        counted = counted_rows(y, self.ignore_index)
        mdca = multiclass_difference(compute_dtype(x), y, counted)
        if self.training:
            self._record(mdca=mdca)
        term = (self.beta * self.schedule_factor) * mdca
        if reduction == "mean":
            return base + term
        if reduction == "sum":
            return base + term * counted.sum()
        return base + term * counted

    # ------------------------------------------------------------------ description
    def hparams(self) -> dict[str, Any]:
        base = {"name": self.base.name, **self.base.hparams()} if self._base_given else None
        return {"beta": self.beta, "base": base}

    def extra_repr(self) -> str:  # the base prints itself as the child module
        return f"beta={self.beta!r}"

    def log_values(self) -> dict[str, Any]:
        return {
            **self.base.log_values(),
            **super().log_values(),
            "smoothing/beta": self.beta * self.schedule_factor,
        }

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        if self._base_given:
            summary["base"] = self.base.summary()
        return summary


def multiclass_difference(x: Tensor, y: Tensor, counted: Tensor) -> Tensor:
    """(1/K) sum_k |mean_i p_ik - mean_i [y_i = k]| over the counted rows (0 if none)."""
    n = counted.sum().clamp_min(1).to(x.dtype)
    weight = counted.to(x.dtype)
    confidence = (torch.softmax(x, dim=1) * weight.unsqueeze(1)).sum(dim=0) / n
    safe = torch.where(counted, y, 0)
    frequency = torch.zeros_like(confidence).index_add_(0, safe, weight) / n
    return (confidence - frequency).abs().mean()


def _build_base(base: BaseSpec, ignore_index: int) -> Strategy:
    from adaptls.smoothing import STRATEGIES  # the registry imports this module

    if isinstance(base, Strategy):
        built = base
        if built.ignore_index != ignore_index:
            raise ValueError(
                f"base has ignore_index={built.ignore_index} but mdca has "
                f"ignore_index={ignore_index}; set the same on both"
            )
    else:
        if base is None:
            base = "none"
        if isinstance(base, str):
            name, hparams = base, {}
        elif isinstance(base, Mapping) and "name" in base:
            hparams = {str(k): v for k, v in base.items() if k != "name"}
            name = base["name"]
        else:
            raise TypeError(
                f"base must be a strategy, a strategy name or a mapping with a 'name' key, "
                f"got {base!r}"
            )
        if name not in STRATEGIES:
            raise ValueError(
                f"base must be one of {', '.join(map(repr, STRATEGIES))}; got {name!r}"
            )
        built = STRATEGIES[name](**hparams, ignore_index=ignore_index)
    if isinstance(built, MDCA):
        raise ValueError("base must not be mdca itself: MDCA is added once")
    return built
