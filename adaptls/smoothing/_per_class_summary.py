"""Per-class values for ``summary()``: listed for a few classes, quantiles for a vocabulary."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: Up to this many classes ``summary()`` lists every class's value; beyond, quantiles
#: (metrics.json stays small at vocabulary scale: 32000 numbers would be ~600 KB).
LISTED_CLASSES = 1000
_QUANTILES = {"min": 0.0, "p10": 0.1, "p50": 0.5, "p90": 0.9, "max": 1.0}


def summarise_per_class(name: str, values: Tensor) -> dict[str, Any]:
    """``{name: [...]}`` for up to :data:`LISTED_CLASSES` values, else
    ``{name + "_quantiles": {"min", "p10", "p50", "p90", "max"}}`` (NaN values skipped)."""
    if values.numel() <= LISTED_CLASSES:
        return {name: values.tolist()}
    q = torch.tensor(list(_QUANTILES.values()), dtype=torch.float64)
    found = values.double().nanquantile(q.to(values.device)).tolist()
    return {f"{name}_quantiles": dict(zip(_QUANTILES, found, strict=True))}
