"""The optimizer factory behind ``conf/optimizer/*.yaml``: weight decay as a first-class knob.

Weight decay comes in two kinds, chosen by the optimizer:

- decoupled (Loshchilov & Hutter 2019): ``adamw`` shrinks every weight by
  ``lr * weight_decay`` per step, apart from the adaptive gradient step;
- L2: ``sgd`` and ``adam`` add ``weight_decay * w`` to the gradient (for Adam it is then
  rescaled by the adaptive step, which is why AdamW exists).

``exclude_norm_and_bias=True`` puts every parameter with at most one dimension -- biases
and normalisation scales and shifts -- in a group without weight decay (timm's
``param_groups_weight_decay`` rule); by default every parameter is decayed (torch's
behaviour, and what the reference recipes in ``conf/experiment`` use).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from adaptls.checks import check_bool, check_choice, check_nonnegative

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def build_optimizer(
    params: Iterable[nn.Parameter],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    exclude_norm_and_bias: bool = False,
    **options: Any,
) -> torch.optim.Optimizer:
    """``OPTIMIZERS[name](groups, lr=lr, **options)``, weight decay set per group.

    ``options``: the optimizer's own arguments (``momentum``, ``nesterov``, ``betas``...).
    """
    check_choice("name", name, tuple(OPTIMIZERS))
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    check_bool("exclude_norm_and_bias", exclude_norm_and_bias)
    params = [p for p in params if p.requires_grad]
    if exclude_norm_and_bias:
        decayed = [p for p in params if p.dim() > 1]
        kept = [p for p in params if p.dim() <= 1]
        groups = [{"params": decayed, "weight_decay": weight_decay}]
        groups += [{"params": kept, "weight_decay": 0.0}] if kept else []
    else:
        groups = [{"params": params, "weight_decay": weight_decay}]
    return OPTIMIZERS[name](groups, lr=lr, **options)
