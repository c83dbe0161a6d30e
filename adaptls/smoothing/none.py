"""No smoothing: plain cross-entropy against the one-hot target."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from adaptls.smoothing.base import Limits, SmoothingStrategy, SoftTarget


class NoSmoothing(SmoothingStrategy):
    """t_i = onehot(y_i), i.e. exactly ``F.cross_entropy(logits, targets)``."""

    name: ClassVar[str] = "none"
    limits = Limits(linear=None)  # smoothing reads no logit values

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        return SoftTarget(0.0)
