"""Online label smoothing (Zhang et al., IEEE TIP 2021), as in the official code, DDP-correct."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_choice, check_int, check_probability
from adaptls.losses._fused import _compute_dtype, fused_soft_target_cross_entropy
from adaptls.losses._fused_linear import fused_linear_soft_target_cross_entropy
from adaptls.losses.soft_target import dense_soft_targets
from adaptls.smoothing._distributed import is_distributed
from adaptls.smoothing._topk_labels import (
    TopKLabels,
    labels_from_slots,
    merge_slots,
    sparse_linear_term,
    sparse_logit_term,
)
from adaptls.smoothing.base import Limits, SmoothingStrategy, SoftTarget
from adaptls.smoothing.figures import PICTURED_CLASSES, MatrixHeatmap


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

    ``topk=k`` (None: the dense K x K matrix, the default) is for vocabulary-sized K, where
    S would take K^2 floats (4 GB at K = 32000): each row keeps its k largest entries and
    spreads the rest of its mass uniformly over the other classes, memory O(K k), exact
    when k = K (k > K is taken as K). Observation keeps ``min(K, 2k)`` running sums per
    class instead of K (:mod:`adaptls.smoothing._topk_labels`: the format, the loss that
    never expands it, and how mass that falls out of the sums joins the uniform rest).
    Not yet for distributed training (the per-rank sums would need a merge, not a sum):
    :attr:`limits` says so, ``adaptls.train`` refuses it before the run
    starts, and a plain distributed loop gets NotImplementedError at the first epoch end.
    """

    name: ClassVar[str] = "online"

    def __init__(
        self, alpha: float = 0.5, init: str = "zeros", topk: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = check_probability("alpha", alpha)
        self.init = check_choice("init", init, ("zeros", "uniform"))
        self.topk = None if topk is None else check_int("topk", topk, minimum=1)
        self._pending: list[tuple[Tensor, Tensor, Tensor]] = []  # top-k: unmerged rows

    @property
    def limits(self) -> Limits:
        """Smoothing reads no logit values (the linear path serves it); top-k cannot train
        on several processes yet."""
        if self.topk is None:
            return Limits(linear=None)
        return Limits(
            linear=None,
            distributed=f"topk={self.topk} does not merge the ranks' running sums yet: use "
            "topk=None (null in a config: the dense S) for distributed training",
        )

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().setup(num_classes, class_counts)
        k = num_classes
        learned = self.init == "uniform"
        top = k if self.topk is None else min(self.topk, k)
        if self.topk is None:
            self.add_state("S", torch.full((k, k), 1.0 / k if learned else 0.0))
        else:
            labels = TopKLabels.uniform(k, top, learned)
            self.add_state("S_index", labels.index)
            self.add_state("S_delta", labels.delta)
            self.add_state("S_share", labels.share)
        # Whether S holds distributions yet (a 0-d bool, checkpointed with S).
        self.add_state("learned", torch.tensor(learned))
        self._learned = learned  # its host copy: the loss branches on it without a sync
        if self.topk is None:
            self.add_state("sum", torch.zeros(k, k, dtype=torch.float64), reduce="sum")
        else:
            # running sums by class index, (K, slots); index K marks an empty slot. Reset
            # by update_state (not reduce="sum": the ranks' indices differ)
            slots = min(k, 2 * top)
            self.add_state("slot_index", torch.full((k, slots), k, dtype=torch.long))
            self.add_state("slot_sum", torch.zeros(k, slots, dtype=torch.float64))
            self._pending = []
        self.add_state("count", torch.zeros(k, dtype=torch.float64), reduce="sum")

    @property
    def labels(self) -> TopKLabels:
        """The learned soft labels in top-k form (``topk`` mode)."""
        return TopKLabels(self.S_index, self.S_delta, self.S_share)

    def _labels_on(self, device: torch.device) -> TopKLabels:
        return TopKLabels(*(t.to(device) for t in self.labels))

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if not self._learned:  # first epoch: the soft term is zero
            return SoftTarget(0.0)
        if self.topk is not None:  # the weight only: _flat_loss applies the top-k labels
            return SoftTarget(1.0 - self.alpha)
        safe = torch.where(targets == self.ignore_index, 0, targets)
        return SoftTarget(1.0 - self.alpha, self.S.to(logits.device), safe)

    def _flat_loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        if self.topk is not None and self._learned:
            eps, rows, safe = self._topk_parts(x, y, indices)
            loss = fused_soft_target_cross_entropy(
                x, y, rows, None, None, self.ignore_index, reduction
            )
            cdt = loss.dtype  # the fused loss's accumulation dtype
            term = sparse_logit_term(self._labels_on(x.device), safe, x.to(cdt))
            return loss - eps * self._reduce(term, y, reduction)
        loss = super()._flat_loss(x, y, indices, reduction)
        # While S is zero only the hard term remains: alpha * CE.
        return loss if self._learned else self.alpha * loss

    def _linear_flat_loss(self, hidden, weight, bias, targets, indices, reduction):
        if self.topk is not None and self._learned:
            stand_in = hidden.new_zeros(()).expand(hidden.shape[0], weight.shape[0])
            eps, rows, safe = self._topk_parts(stand_in, targets, indices)
            loss = fused_linear_soft_target_cross_entropy(
                hidden, weight, bias, targets, rows, None, None, self.ignore_index, reduction
            )
            cdt = loss.dtype  # the kernel's accumulation dtype
            term = sparse_linear_term(
                self._labels_on(hidden.device),
                safe,
                hidden.to(cdt),
                weight.to(cdt),
                None if bias is None else bias.to(cdt),
            )
            return loss - eps * self._reduce(term, targets, reduction)
        loss = super()._linear_flat_loss(hidden, weight, bias, targets, indices, reduction)
        return loss if self._learned else self.alpha * loss

    def _topk_parts(self, x: Tensor, y: Tensor, indices: Tensor | None):
        """Top-k mode: epsilon (schedule applied, recorded), the per-row epsilon of the
        uniform part (eps * K * share_y) and the targets with ignored rows at class 0."""
        eps = self._checked_target(x, y, indices).epsilon  # a float: (1 - alpha) * s(epoch)
        safe = torch.where(y == self.ignore_index, 0, y)
        return eps, self.S_share.to(y.device)[safe] * (eps * x.shape[1]), safe

    def _reduce(self, term: Tensor, y: Tensor, reduction: str) -> Tensor:
        """The per-row ``term`` reduced like the loss: ignored rows 0, mean over counted."""
        counted = y != self.ignore_index
        term = torch.where(counted, term, 0.0)
        if reduction == "none":
            return term
        if reduction == "sum":
            return term.sum()
        return term.sum() / counted.sum().clamp(min=1)

    def _dense_target(self, x: Tensor, y: Tensor, indices: Tensor | None) -> Tensor:
        if self.topk is None or not self._learned:
            return super()._dense_target(x, y, indices)
        eps = (1.0 - self.alpha) * self.schedule_factor
        safe = torch.where(y == self.ignore_index, 0, y)
        rows = self.labels.dense(safe.to(self.S_share.device)).to(x.device)
        return dense_soft_targets(
            y, x.shape[1], eps, rows, ignore_index=self.ignore_index, dtype=_compute_dtype(x.dtype)
        )

    @torch.no_grad()
    def observe(self, logits: Tensor, targets: Tensor, indices: Tensor | None = None) -> None:
        if not self.training:
            return
        x, y = self._flatten_checked(logits, targets)
        p = torch.softmax(x.detach().double(), dim=-1)
        correct = (p.argmax(dim=-1) == y) & (y != self.ignore_index)
        weight = correct.to(p.dtype)
        if self.topk is not None:
            self._observe_top(p, y, correct)
            return
        safe = torch.where(correct, y, 0).to(self.sum.device)
        # index_add_ accumulates repeated labels; `sum[y] += p` would keep only one of them.
        # Masked by weight rather than by boolean indexing: no host sync for the count.
        self.sum.index_add_(0, safe, (p * weight.unsqueeze(1)).to(self.sum.device))
        self.count.index_add_(0, safe, weight.to(self.count.device))

    def _observe_top(self, p: Tensor, y: Tensor, correct: Tensor) -> None:
        """Top-k mode: keep each correct row's top-``slots`` probabilities for the next
        merge (rows that do not count go to class K, which the merge drops)."""
        k = self._require_num_classes()
        device = self.slot_sum.device
        value, index = p.topk(self.slot_index.shape[1], dim=1)
        classes = torch.where(correct, y, k).unsqueeze(1).expand_as(index)
        self._pending.append(
            (classes.reshape(-1).to(device), index.reshape(-1).to(device), value.reshape(-1))
        )
        safe = torch.where(correct, y, 0).to(device)
        self.count.index_add_(0, safe, correct.to(self.count.dtype).to(device))
        # merge once the pending rows hold as many entries as the slots (amortised cost)
        if sum(c.numel() for c, _, _ in self._pending) >= self.slot_sum.numel():
            self._merge_pending()

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        classes, index, value = (torch.cat(parts) for parts in zip(*self._pending, strict=True))
        self._pending = []
        self.slot_index, self.slot_sum = merge_slots(
            self.slot_index, self.slot_sum, classes, index, value.to(self.slot_sum.device)
        )

    def get_extra_state(self) -> dict[str, Tensor]:
        if self.topk is not None:
            self._merge_pending()  # a checkpoint holds every observed row
        return super().get_extra_state()

    def update_state(self) -> None:
        k = self._require_num_classes()
        if self.topk is not None:
            if is_distributed():  # adaptls.train refuses this at build time already
                raise NotImplementedError(f"OnlineSmoothing: {self.limits.distributed}")
            self._merge_pending()
            labels = labels_from_slots(
                self.slot_index, self.slot_sum, self.count, self.S_index.shape[1]
            )
            self.S_index, self.S_delta, self.S_share = labels
            for name in ("slot_index", "slot_sum"):  # this epoch's sums are spent
                setattr(self, name, self._states[name].default.to(self.slot_sum.device, copy=True))
            self.learned = torch.ones_like(self.learned)
            self._learned = True
            return
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
        diagonal = self.S.diagonal() if self.topk is None else self.labels.diagonal()
        return {
            "smoothing/epsilon": (1.0 - self.alpha) * self.schedule_factor
            if self._learned
            else 0.0,
            "smoothing/S_diag_mean": diagonal.mean(),
        }

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        k = self.num_classes or 0
        if 0 < k <= 100:
            summary["S"] = (self.S if self.topk is None else self.labels.dense()).tolist()
        return summary

    def figures(self) -> dict[str, MatrixHeatmap]:
        if not 0 < (self.num_classes or 0) <= PICTURED_CLASSES:
            return {}
        S = self.S if self.topk is None else self.labels.dense()
        return {"smoothing/S": MatrixHeatmap(S, "Online soft labels S")}
