"""Turn tensors, arrays and sequences into float NumPy arrays for plotting."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """``value`` as a float64 array with ``ndim`` dimensions, or a clear error."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {array.shape}")
    return array
