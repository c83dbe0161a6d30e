"""Progressive self-knowledge distillation (PS-KD, Kim et al., ICCV 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.smoothing._distributed import all_reduce_sum
from adaptls.smoothing.base import SmoothingStrategy, SoftTarget


class SelfDistillSmoothing(SmoothingStrategy):
    r"""The model's own previous-epoch prediction of each sample as its soft label.

    .. math:: t_i = (1 - a_e)\,\mathrm{onehot}(y_i) + a_e\, p_{e-1}(x_i),
              \qquad a_e = a_T \cdot e / E

    with e the epoch (0-based), E the run's epochs and :math:`p_{e-1}(x_i)` the softmax the
    model gave sample i (by its index in the training set) during the previous training
    epoch. Epoch 0 trains on one-hot targets (:math:`a_0 = 0`); a sample not yet seen keeps
    a one-hot target. PS-KD's default :math:`a_T = 0.8`.

    Predictions are kept compactly: an (N_train, K) float16 table on the CPU, N_train
    from the class counts given to :meth:`setup`. During an epoch each rank collects the
    predictions of the samples it trains on; :meth:`on_epoch_end` sums them (and how
    often each sample was seen) across ranks, so every rank holds the same table, each
    sample stored once (averaged if a sampler repeated it). The table and the epoch's
    collection are checkpointed (``get_extra_state``), not registered buffers, so DDP does
    not broadcast them at every step.

    Needs the batch's sample indices in training (``forward(..., indices=...)``; the
    datamodules yield ``(x, y, index)``). Without indices, e.g. for a validation loss, the
    target is one-hot.
    """

    name: ClassVar[str] = "self_distill"

    def __init__(self, alpha_T: float = 0.8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(alpha_T, bool) or not isinstance(alpha_T, int | float):
            raise TypeError(f"alpha_T must be a number in [0, 1], got {alpha_T!r}")
        if not 0.0 <= alpha_T <= 1.0:
            raise ValueError(f"alpha_T must be in [0, 1], got {alpha_T!r}")
        self.alpha_T = float(alpha_T)
        self._table = torch.empty(0, 0, dtype=torch.float16)
        self._stored = torch.empty(0, dtype=torch.bool)
        self._next = torch.empty(0, 0)
        self._next_count = torch.empty(0)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        if class_counts is None:
            raise ValueError(
                "SelfDistillSmoothing needs class_counts to size its per-sample table; "
                "pass setup(num_classes=..., class_counts=[...])"
            )
        super().setup(num_classes, class_counts)
        n = int(self.class_counts.sum())
        self._table = torch.zeros(n, num_classes, dtype=torch.float16)
        self._stored = torch.zeros(n, dtype=torch.bool)
        self._reset_collection()

    @property
    def alpha(self) -> float:
        """a_e = a_T * e / E for the current epoch (see :meth:`set_epoch`)."""
        total = self.max_epochs if self.max_epochs else 1
        return self.alpha_T * min(self.epoch, total) / total

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        alpha = self.alpha
        if alpha == 0.0 or indices is None:
            return SoftTarget(0.0)
        idx = self._checked_indices(indices, targets).cpu()
        prior = self._table[idx].float()
        fresh = ~self._stored[idx]
        if fresh.any():  # not seen yet: the prior is the one-hot target itself
            onehot = torch.zeros_like(prior)
            safe = torch.where(targets == self.ignore_index, 0, targets).cpu()
            onehot[torch.arange(len(idx)), safe] = 1.0
            prior = torch.where(fresh.unsqueeze(1), onehot, prior)
        return SoftTarget(alpha, prior.to(logits.device))

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        if not self.training:
            return
        if indices is None:
            raise ValueError(
                "SelfDistillSmoothing.observe needs the batch's sample indices "
                "(the datamodules yield (x, y, index))"
            )
        x, y = self._flatten_checked(logits, targets)
        idx = self._checked_indices(indices, targets).cpu()
        keep = (y != self.ignore_index).cpu()
        p = torch.softmax(x.detach().float(), dim=-1).cpu()
        self._next.index_add_(0, idx[keep], p[keep])
        self._next_count.index_add_(0, idx[keep], torch.ones(int(keep.sum())))

    @torch.no_grad()
    def on_epoch_end(self) -> None:
        all_reduce_sum(self._next)
        all_reduce_sum(self._next_count)
        seen = self._next_count > 0
        mean = self._next[seen] / self._next_count[seen].unsqueeze(1)
        self._table[seen] = mean.to(self._table.dtype)
        self._stored |= seen
        self._reset_collection()

    def _reset_collection(self) -> None:
        n, k = self._table.shape
        self._next = torch.zeros(n, k)
        self._next_count = torch.zeros(n)

    def _checked_indices(self, indices: Tensor, targets: Tensor) -> Tensor:
        idx = indices.reshape(-1).long()
        n = self._table.shape[0]
        if idx.numel() != targets.numel():
            raise ValueError(
                f"indices must hold one sample index per target ({targets.numel()}), "
                f"got {idx.numel()}"
            )
        if idx.numel() and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(
                f"sample index out of range: allowed 0..{n - 1} (the training set), got "
                f"{idx.min().item()}..{idx.max().item()}"
            )
        return idx

    def get_extra_state(self) -> dict[str, Tensor]:
        return {
            "table": self._table.clone(),
            "stored": self._stored.clone(),
            "next": self._next.clone(),
            "next_count": self._next_count.clone(),
        }

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self._table = state["table"].cpu().to(torch.float16).clone()
        self._stored = state["stored"].cpu().clone()
        self._next = state["next"].cpu().float().clone()
        self._next_count = state["next_count"].cpu().float().clone()

    def log_values(self) -> dict[str, float]:
        return {"smoothing/epsilon": self.alpha}

    def hparams(self) -> dict[str, Any]:
        return {"alpha_T": self.alpha_T}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "stored_predictions": int(self._stored.sum())}
