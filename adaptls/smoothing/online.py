"""Online label smoothing (Zhang et al., IEEE TIP 2021), as in the official code, DDP-correct."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_choice, check_probability
from adaptls.smoothing.base import SmoothingStrategy, SoftTarget


class OnlineSmoothing(SmoothingStrategy):
    r"""Soft labels learned from the model's own correct predictions.

    A K x K matrix S (row c = the soft label of class c) starts at **zeros**, as in the
    official CIFAR script (``train_cifar_all_methods.py``, method ``ols``). During a
    training epoch, :meth:`observe` adds :math:`\mathrm{softmax}(x_i)` of every training
    sample whose top-1 prediction is its label to row :math:`y_i` of an accumulator and
    counts it; at the end of the epoch :math:`S_c` becomes that row's mean, or uniform 1/K
    for a class with no correct sample. The loss is

    .. math:: \alpha\, \mathrm{CE}(x_i, y_i) + (1 - \alpha)\, \Big(-\sum_k S_{y_i k}
              \log \mathrm{softmax}(x_i)_k\Big),

    the official script's ``0.5 * CE + 0.5 * soft_cross_entropy`` for alpha = 0.5. Once S
    has been learned its rows are distributions, so this is the fused soft-target loss with
    :math:`\varepsilon = 1 - \alpha` and per-row prior :math:`S_{y_i}` (gathered chunk by
    chunk, never expanded to N x K). During the first epoch S is zero and the loss is
    :math:`\alpha\,\mathrm{CE}` (the soft term vanishes).

    ``init="uniform"`` (not the official behaviour, off by default) starts S at 1/K
    instead, so that the first epoch trains with uniform smoothing of weight 1 - alpha.

    Distributed training: the accumulators are declared per-epoch sums, reduced across
    ranks by :meth:`on_epoch_end` before S is updated, so every rank holds the same S (the
    official code has no cross-process reduction).
    """

    name: ClassVar[str] = "online"
    linear_unsupported: ClassVar[str | None] = None  # smoothing reads no logit values

    def __init__(self, alpha: float = 0.5, init: str = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_probability("alpha", alpha)
        self.init = check_choice("init", init, ("zeros", "uniform"))

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().setup(num_classes, class_counts)
        k = num_classes
        learned = self.init == "uniform"
        self.add_state("S", torch.full((k, k), 1.0 / k if learned else 0.0))
        # Whether S holds distributions yet (a 0-d bool, checkpointed with S).
        self.add_state("learned", torch.tensor(learned))
        self._learned = learned  # its host copy: the loss branches on it without a sync
        self.add_state("sum", torch.zeros(k, k, dtype=torch.float64), reduce="sum")
        self.add_state("count", torch.zeros(k, dtype=torch.float64), reduce="sum")

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if not self._learned:  # first epoch: the soft term is zero
            return SoftTarget(0.0)
        safe = torch.where(targets == self.ignore_index, 0, targets)
        return SoftTarget(1.0 - self.alpha, self.S.to(logits.device), safe)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        loss = super().loss(x, y, indices, reduction)
        # While S is zero only the hard term remains: alpha * CE.
        return loss if self._learned else self.alpha * loss

    def linear_flat_loss(self, hidden, weight, bias, targets, indices, reduction):
        loss = super().linear_flat_loss(hidden, weight, bias, targets, indices, reduction)
        return loss if self._learned else self.alpha * loss

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        if not self.training:
            return
        x, y = self._flatten_checked(logits, targets)
        p = torch.softmax(x.detach().double(), dim=-1)
        correct = (p.argmax(dim=-1) == y) & (y != self.ignore_index)
        weight = correct.to(p.dtype)
        safe = torch.where(correct, y, 0).to(self.sum.device)
        # index_add_ accumulates repeated labels; `sum[y] += p` would keep only one of them.
        # Masked by weight rather than by boolean indexing: no host sync for the count.
        self.sum.index_add_(0, safe, (p * weight.unsqueeze(1)).to(self.sum.device))
        self.count.index_add_(0, safe, weight.to(self.count.device))

    def update_state(self) -> None:
        k = self.require_num_classes()
        seen = self.count > 0
        mean = self.sum / self.count.clamp(min=1).unsqueeze(1)
        uniform = torch.full_like(mean, 1.0 / k)
        self.S = torch.where(seen.unsqueeze(1), mean, uniform).to(self.S.dtype)
        self.learned = torch.ones_like(self.learned)
        self._learned = True

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        super().set_extra_state(state)
        self._learned = bool(self.learned)

    def log_values(self) -> dict[str, float | Tensor]:
        if self.num_classes is None:
            return {}
        return {
            "smoothing/epsilon": (1.0 - self.alpha) if self._learned else 0.0,
            "smoothing/S_diag_mean": self.S.diagonal().mean(),
        }

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "init": self.init}

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        if 0 < self.S.shape[0] <= 100:
            summary["S"] = self.S.tolist()
        return summary
