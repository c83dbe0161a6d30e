"""Class-frequency-aware (label-aware) smoothing, MiSLAS (Zhong et al., CVPR 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_class_counts
from adaptls.smoothing._per_class_summary import summarise_per_class
from adaptls.smoothing.base import (
    Limits,
    SmoothingStrategy,
    SoftTarget,
    check_choice,
    check_epsilon,
    check_positive,
)
from adaptls.smoothing.figures import PICTURED_CLASSES, PerClassBars

SHAPES = ("concave", "linear", "convex", "power")
COUNT_SCALES = ("linear", "log")


def label_aware_epsilon(
    class_counts: Sequence[int] | Tensor,
    epsilon_head: float,
    epsilon_tail: float,
    shape: str = "concave",
    power: float = 1.0,
    count_scale: str = "linear",
) -> Tensor:
    r"""Per-class epsilon from training counts (MiSLAS).

    With :math:`N_1 = \max_c n_c`, :math:`N_K = \min_c n_c`,
    :math:`r_y = (n_y - N_K) / (N_1 - N_K) \in [0, 1]`, :math:`e_1` = head and
    :math:`e_K` = tail:

    - concave: :math:`e_y = e_K + (e_1 - e_K) \sin(\tfrac{\pi}{2} r_y)` (their default)
    - linear:  :math:`e_y = e_K + (e_1 - e_K)\, r_y`
    - convex:  :math:`e_y = e_1 + (e_1 - e_K) \sin(\tfrac{3\pi}{2} + \tfrac{\pi}{2} r_y)`
    - power:   :math:`e_y = e_K + (e_1 - e_K)\, r_y^{p}`

    When all counts are equal (:math:`N_1 = N_K`) every class is a head class:
    :math:`r_y = 1` and :math:`e_y = e_1` (MiSLAS's code divides by zero here).

    Counts of zero are allowed (a token that never occurs in the training split): with
    :math:`N_K = 0` such a class has :math:`r = 0` and gets :math:`e_K`, the tail's
    epsilon, like the rarest class. (It is never a training target, so this only shapes a
    smoothed validation loss.)

    ``count_scale="log"`` (not MiSLAS; off by default) measures the counts as
    :math:`\log(1 + n)` before the ratio. For Zipf-shaped token frequencies the linear
    ratio puts nearly every token at the tail: with :math:`n \propto 1/\mathrm{rank}`,
    :math:`r < 0.01` for all but the top 1% of a vocabulary (99.7% of 32000 tokens), so
    the strategy smooths almost nothing; on the log scale
    :math:`r \approx 1 - \log(\mathrm{rank}) / \log V`, under 0.01 for ~12% of them.
    """
    check_choice("shape", shape, SHAPES)
    check_positive("power", power)
    check_choice("count_scale", count_scale, COUNT_SCALES)
    counts = check_class_counts(class_counts).double()
    if count_scale == "log":
        counts = counts.log1p()
    n_max, n_min = counts.max(), counts.min()
    if n_max == n_min:
        r = torch.ones_like(counts)
    else:
        r = (counts - n_min) / (n_max - n_min)
    head, tail = float(epsilon_head), float(epsilon_tail)
    if shape == "concave":
        eps = tail + (head - tail) * torch.sin(math.pi / 2 * r)
    elif shape == "linear":
        eps = tail + (head - tail) * r
    elif shape == "convex":
        eps = head + (head - tail) * torch.sin(3 * math.pi / 2 + math.pi / 2 * r)
    else:
        eps = tail + (head - tail) * r.pow(power)
    return eps.float()


class ClassFrequencySmoothing(SmoothingStrategy):
    r"""Label-aware smoothing: frequent classes are smoothed more than rare ones.

    The target for a sample of class y is
    :math:`(1 - e_y)\,\mathrm{onehot}(y) + e_y / K` on every class (MiSLAS's code spreads
    :math:`e_y/K` over all classes, PyTorch's convention), with :math:`e_y` from
    :func:`label_aware_epsilon` on the training class counts given to :meth:`setup`.
    Defaults (0.3 head, 0.0 tail, concave) are MiSLAS's for CIFAR-10-LT IF100.

    Token frequencies (a vocabulary as the classes): ``class_counts`` of length V with
    zeros for tokens the training split never holds; such a token gets ``epsilon_tail``
    (see :func:`label_aware_epsilon`, and its ``count_scale="log"`` for Zipf-shaped
    counts). Memory: one (V,) float32 vector.
    """

    name: ClassVar[str] = "class_frequency"
    limits = Limits(linear=None)  # smoothing reads no logit values
    epsilon_per_class: Tensor

    def __init__(
        self,
        epsilon_head: float = 0.3,
        epsilon_tail: float = 0.0,
        shape: str = "concave",
        power: float = 1.0,
        count_scale: str = "linear",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.epsilon_head = check_epsilon("epsilon_head", epsilon_head)
        self.epsilon_tail = check_epsilon("epsilon_tail", epsilon_tail)
        self.shape = check_choice("shape", shape, SHAPES)
        self.power = check_positive("power", power)
        self.count_scale = check_choice("count_scale", count_scale, COUNT_SCALES)
        # Derived from the counts at setup(), so not part of the checkpoint.
        self.register_buffer("epsilon_per_class", torch.empty(0), persistent=False)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        if class_counts is None:
            raise ValueError(
                "ClassFrequencySmoothing needs class_counts (training samples per class); "
                "pass setup(num_classes=..., class_counts=[...])"
            )
        super().setup(num_classes, class_counts)
        eps = label_aware_epsilon(
            self.class_counts,
            self.epsilon_head,
            self.epsilon_tail,
            self.shape,
            self.power,
            self.count_scale,
        )
        self.epsilon_per_class = eps.to(self.epsilon_per_class.device)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if self.epsilon_per_class.numel() == 0:
            raise RuntimeError("ClassFrequencySmoothing needs class_counts: call setup() first")
        safe = torch.where(targets == self.ignore_index, 0, targets)
        return SoftTarget(self.epsilon_per_class.to(targets.device)[safe])

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            **summarise_per_class("epsilon_per_class", self.epsilon_per_class),
        }

    def figures(self) -> dict[str, PerClassBars]:
        if not 0 < self.epsilon_per_class.numel() <= PICTURED_CLASSES:
            return {}
        return {
            "smoothing/epsilon_per_class": PerClassBars(self.epsilon_per_class, "Epsilon per class")
        }
