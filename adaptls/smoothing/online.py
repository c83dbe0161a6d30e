"""Online label smoothing (Zhang et al., IEEE TIP 2021), correct under DDP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.smoothing._distributed import all_reduce_sum
from adaptls.smoothing.base import SmoothingStrategy, SoftTarget


class OnlineSmoothing(SmoothingStrategy):
    r"""Soft labels learned from the model's own correct predictions.

    A K x K matrix S (row c = the soft label of class c) starts uniform. During a training
    epoch, :meth:`observe` adds :math:`\mathrm{softmax}(x_i)` of every correctly classified
    training sample to row :math:`y_i` of an accumulator and counts it; :meth:`on_epoch_end`
    sets :math:`S_c` to that row's mean, or to uniform 1/K for a class with no correct
    sample (as the official code does). The loss is

    .. math:: \alpha\, \mathrm{CE}(x_i, y_i) + (1 - \alpha)\, \mathrm{CE}(x_i, S_{y_i}),

    i.e. the fused loss with :math:`\varepsilon = 1 - \alpha` and per-row prior
    :math:`S_{y_i}` (gathered chunk by chunk, never expanded to N x K). The official CIFAR
    script uses alpha = 0.5.

    Distributed training: the accumulators are summed over all ranks in
    :meth:`on_epoch_end` before S is updated, so every rank holds the same S. They are
    plain tensors saved through ``get_extra_state`` rather than registered buffers, so
    DDP's per-forward buffer broadcast from rank 0 cannot overwrite another rank's
    statistics. S itself is a buffer (identical on all ranks, so the broadcast is
    harmless).
    """

    name: ClassVar[str] = "online"
    S: Tensor

    def __init__(self, alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.register_buffer("S", torch.empty(0, 0))
        self._sum = torch.empty(0, 0, dtype=torch.float64)
        self._count = torch.empty(0, dtype=torch.float64)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().setup(num_classes, class_counts)
        device = self.S.device
        self.S = torch.full((num_classes, num_classes), 1.0 / num_classes, device=device)
        self._reset_accumulators(device)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        safe = torch.where(targets == self.ignore_index, 0, targets)
        return SoftTarget(1.0 - self.alpha, self.S.to(logits.device), safe)

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        if not self.training:
            return
        x, y = self._flatten_checked(logits, targets)
        p = torch.softmax(x.detach().double(), dim=-1)
        correct = (p.argmax(dim=-1) == y) & (y != self.ignore_index)
        if self._sum.device != p.device:
            self._sum, self._count = self._sum.to(p.device), self._count.to(p.device)
        # index_add_ accumulates repeated labels; `sum[y] += p` would keep only one of them.
        self._sum.index_add_(0, y[correct], p[correct])
        self._count.index_add_(0, y[correct], torch.ones_like(y[correct], dtype=torch.float64))

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        k = self.require_num_classes()
        # on S's device: the collective backend (NCCL) needs them where the model is
        self._sum, self._count = self._sum.to(self.S.device), self._count.to(self.S.device)
        all_reduce_sum(self._sum)
        all_reduce_sum(self._count)
        seen = self._count > 0
        mean = self._sum / self._count.clamp(min=1).unsqueeze(1)
        uniform = torch.full_like(mean, 1.0 / k)
        self.S.copy_(torch.where(seen.unsqueeze(1), mean, uniform))
        self._reset_accumulators(self.S.device)

    def _reset_accumulators(self, device: torch.device) -> None:
        k = self.require_num_classes()
        self._sum = torch.zeros(k, k, dtype=torch.float64, device=device)
        self._count = torch.zeros(k, dtype=torch.float64, device=device)

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"sum": self._sum.clone(), "count": self._count.clone()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self._sum = state["sum"].to(torch.float64).clone()
        self._count = state["count"].to(torch.float64).clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Allow loading into a strategy that was not set up: S's shape comes from the file.
        key = prefix + "S"
        if self.num_classes is None and key in state_dict:
            self.setup(int(state_dict[key].shape[0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def log_values(self) -> dict[str, float]:
        if self.S.numel() == 0:
            return {}
        return {
            "smoothing/epsilon": 1.0 - self.alpha,
            "smoothing/S_diag_mean": self.S.diagonal().mean().item(),
        }

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        if 0 < self.S.shape[0] <= 100:
            summary["S"] = self.S.tolist()
        return summary
