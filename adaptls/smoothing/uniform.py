r"""Uniform label smoothing (Szegedy et al. 2016), in PyTorch's or fairseq's convention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor

from adaptls.smoothing.base import (
    Limits,
    SmoothingStrategy,
    SoftTarget,
    check_choice,
    check_epsilon,
)

#: ``torch``: e/K on every class, the true one included; ``fairseq``: e/(K-1) on every
#: other class, none on the true one.
CONVENTIONS = ("torch", "fairseq")


class UniformSmoothing(SmoothingStrategy):
    r"""Uniform smoothing of amount e, in one of two conventions (``convention``).

    - ``torch`` (default): :math:`t = (1 - e)\,\mathrm{onehot}(y) + e/K` on every class,
      the true one included: the true class gets :math:`1 - e + e/K`, every other
      :math:`e/K`. Identical to ``F.cross_entropy(logits, targets, label_smoothing=e)``
      and timm's ``LabelSmoothingCrossEntropy``.
    - ``fairseq``: the true class gets :math:`1 - e`, every other :math:`e/(K-1)`, as
      fairseq's ``label_smoothed_cross_entropy`` (the translation literature's loss:
      :math:`(1 - e - e_i)\,\mathrm{nll} + e_i \sum_k -\log p_k` with
      :math:`e_i = e/(K-1)`). It is the torch convention at
      :math:`e' = e K/(K-1)`: :math:`1 - e' + e'/K = 1 - e` and :math:`e'/K = e/(K-1)`,
      so it is trained as that (a uniform prior, the fused loss's fastest path); it needs
      :math:`e \le (K-1)/K` (:math:`e' \le 1`), checked at :meth:`setup`.

    The two differ by a factor :math:`K/(K-1)` on the smoothing mass: negligible at a
    vocabulary's K (1.0005 at K = 2000), 1.11 at K = 10 and 2 at K = 2. ``log_values``
    reports e as configured; the applied-epsilon record (the mass of the uniform part)
    is :math:`e'` under ``fairseq``.
    """

    name: ClassVar[str] = "uniform"
    limits = Limits(linear=None)  # smoothing reads no logit values

    def __init__(self, epsilon: float = 0.1, convention: str = "torch", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.convention = check_choice("convention", convention, CONVENTIONS)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().setup(num_classes, class_counts)
        if self.convention == "fairseq":
            fairseq_epsilon(self.epsilon, self.num_classes)  # its checks, before any step

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if self.convention == "fairseq":
            return SoftTarget(fairseq_epsilon(self.epsilon, logits.shape[-1]))
        return SoftTarget(self.epsilon)

    def log_values(self) -> dict[str, float]:
        return {"smoothing/epsilon": self.epsilon * self.schedule_factor}


def fairseq_epsilon(epsilon: float, classes: int) -> float:
    r"""The torch-convention amount :math:`e K/(K-1)` whose target is fairseq's of amount
    :math:`e` over ``classes`` K: :math:`1 - e` on the true class, :math:`e/(K-1)` on
    every other. ValueError unless K >= 2 and :math:`e \le (K-1)/K`."""
    if classes < 2:
        raise ValueError(f"the fairseq convention needs at least 2 classes, got {classes}")
    if epsilon > (classes - 1) / classes:
        raise ValueError(
            f"epsilon={epsilon} is more than (K-1)/K = {(classes - 1) / classes:.4g} for "
            f"K={classes} classes: the fairseq convention's true class would get less than "
            "each other class; use a smaller epsilon or convention=torch"
        )
    # at e = (K-1)/K exactly, rounding must not push e' past 1
    return min(1.0, epsilon * classes / (classes - 1))
