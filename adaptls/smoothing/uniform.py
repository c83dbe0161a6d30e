"""Uniform label smoothing (Szegedy et al. 2016), PyTorch's convention."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from adaptls.smoothing.base import Limits, SmoothingStrategy, SoftTarget, check_epsilon


class UniformSmoothing(SmoothingStrategy):
    """t = (1 - e) * onehot(y) + e / K on every class, the true one included.

    Identical to ``F.cross_entropy(logits, targets, label_smoothing=e)`` and timm's
    ``LabelSmoothingCrossEntropy``: the true class gets 1 - e + e/K, every other e/K
    (not e/(K-1)).
    """

    name: ClassVar[str] = "uniform"
    limits = Limits(linear=None)  # smoothing reads no logit values

    def __init__(self, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = check_epsilon("epsilon", epsilon)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        return SoftTarget(self.epsilon)

    def log_values(self) -> dict[str, float]:
        return {"smoothing/epsilon": self.epsilon * self.schedule_factor}
