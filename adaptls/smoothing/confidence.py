"""Confidence-adaptive smoothing: smooth more where the model is more confident."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.losses._fused_linear import (
    RowEpsilon,
    RowStatistics,
    fused_linear_soft_target_cross_entropy,
)
from adaptls.smoothing.base import (
    Limits,
    SmoothingStrategy,
    SoftTarget,
    check_choice,
    check_epsilon,
    check_positive,
)

SIGNALS = ("max_prob", "target_prob", "entropy")


class ConfidenceSmoothing(SmoothingStrategy):
    r"""Per-sample epsilon from the model's own (detached) confidence.

    .. math:: \varepsilon_i = \varepsilon_{min} + (\varepsilon_{max} - \varepsilon_{min})\, c_i^{p}

    with :math:`p_i = \mathrm{softmax}(x_i)` (no gradient) and the confidence :math:`c_i \in [0, 1]`:

    - ``max_prob``: :math:`\max_k p_{ik}` (top-1 probability);
    - ``target_prob``: :math:`p_{i y_i}` (probability of the true class);
    - ``entropy``: :math:`1 - H(p_i) / \log K`.

    The target is then :math:`(1 - \varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i / K`
    (uniform over all K classes, PyTorch's convention). Over-confident samples get more
    smoothing, uncertain ones less: the common thread of confidence-driven targets
    (PS-KD, Kim et al. ICCV 2021; instance-based smoothing, Maher & Kull 2021).

    Through the fused linear path (:meth:`linear_loss`, vocabulary-sized K) the confidence
    comes from per-row statistics of the chunk pass that computes the loss anyway, never
    from a second softmax over K: with :math:`m_i` the row maximum,
    max_prob :math:`= e^{-(\mathrm{lse}_i - m_i)}`, target_prob
    :math:`= e^{x_{iy_i} - \mathrm{lse}_i}`, and the entropy from one more reduction over
    the chunk's exponentials (:class:`~adaptls.losses._fused_linear.RowStatistics`).
    Unlike the unfused path (float32 softmax), the statistics are in the kernel's
    accumulation dtype (float64 for float64 inputs).
    """

    name: ClassVar[str] = "confidence"
    limits = Limits(linear=None)  # its signal: per-row kernel statistics

    def __init__(
        self,
        epsilon_min: float = 0.0,
        epsilon_max: float = 0.2,
        signal: str = "max_prob",
        power: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.epsilon_min = check_epsilon("epsilon_min", epsilon_min)
        self.epsilon_max = check_epsilon("epsilon_max", epsilon_max)
        if self.epsilon_min > self.epsilon_max:
            raise ValueError(f"epsilon_min ({epsilon_min}) must be <= epsilon_max ({epsilon_max})")
        self.signal = check_choice("signal", signal, SIGNALS)
        self.power = check_positive("power", power)
        self._last_epsilon: Tensor | None = None  # the last batch's, every row
        self._last_counted: Tensor | None = None  # which of its rows count (not ignored)

    @torch.no_grad()
    def confidence(self, logits: Tensor, targets: Tensor) -> Tensor:
        """c_i in [0, 1] for (N, K) logits and (N,) targets (ignored rows: any value)."""
        p = torch.softmax(logits.detach().float(), dim=-1)
        if self.signal == "max_prob":
            return p.amax(dim=-1)
        if self.signal == "target_prob":
            safe = torch.where(targets == self.ignore_index, 0, targets)
            return p.gather(1, safe.unsqueeze(1)).squeeze(1)
        entropy = -torch.special.xlogy(p, p).sum(dim=-1)
        return (1.0 - entropy / math.log(p.shape[-1])).clamp_(0.0, 1.0)

    def confidence_of(self, stats: RowStatistics, num_classes: int) -> Tensor:
        """c_i from the fused linear kernel's per-row statistics (see the class docstring)."""
        if self.signal == "max_prob":
            return torch.exp(-stats.log_total)
        if self.signal == "target_prob":
            return torch.exp(stats.target - stats.log_total)
        return (1.0 - stats.entropy / math.log(num_classes)).clamp_(0.0, 1.0)

    def epsilon_of(self, c: Tensor) -> Tensor:
        """eps_i = eps_min + (eps_max - eps_min) c_i^p."""
        return self.epsilon_min + (self.epsilon_max - self.epsilon_min) * c.pow(self.power)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        eps = self.epsilon_of(self.confidence(logits, targets))
        # kept whole with a mask, not as eps[mask] (a host sync: its size depends on values)
        self._last_epsilon, self._last_counted = eps, targets != self.ignore_index
        return SoftTarget(eps)

    def _linear_flat_loss(self, hidden, weight, bias, targets, indices, reduction):
        k = weight.shape[0]
        row_epsilon = RowEpsilon(
            lambda stats: self.epsilon_of(self.confidence_of(stats, k)),
            entropy=self.signal == "entropy",
            factor=self.schedule_factor,
        )
        loss = fused_linear_soft_target_cross_entropy(
            hidden, weight, bias, targets, row_epsilon, None, None, self.ignore_index, reduction
        )
        eps = row_epsilon.values
        self._last_epsilon, self._last_counted = eps, targets != self.ignore_index
        if self.training and torch.is_grad_enabled():
            factor = row_epsilon.factor
            self._record_applied(eps * factor if factor != 1.0 else eps, targets)
        return loss

    @torch.no_grad()
    def log_values(self) -> dict[str, float | Tensor]:
        """Mean, min and max epsilon applied (schedule included) over the last batch's
        counted rows, as 0-d tensors (no host sync; NaN when no row counted)."""
        eps, counted = self._last_epsilon, self._last_counted
        if eps is None or counted is None or eps.numel() == 0:  # shapes only: no sync
            return {}
        eps = eps * self.schedule_factor  # what was applied
        count = counted.sum()
        nan = torch.full((), float("nan"), dtype=eps.dtype, device=eps.device)
        any_counted = count > 0
        return {
            "smoothing/epsilon_mean": torch.where(any_counted, (eps * counted).sum() / count, nan),
            "smoothing/epsilon_min": torch.where(
                any_counted, torch.where(counted, eps, float("inf")).amin(), nan
            ),
            "smoothing/epsilon_max": torch.where(
                any_counted, torch.where(counted, eps, float("-inf")).amax(), nan
            ),
        }
