"""Progressive self-knowledge distillation (PS-KD, Kim et al., ICCV 2021), as in the official code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_probability
from adaptls.smoothing.base import Limits, SmoothingStrategy, SoftTarget, check_run_length


class SelfDistillSmoothing(SmoothingStrategy):
    r"""The model's own previous-epoch prediction of each sample as its soft label.

    .. math:: t_i = (1 - a_e)\,\mathrm{onehot}(y_i) + a_e\, p_{e-1}(x_i),
              \qquad a_e = a_T \cdot \frac{e + 1}{E}

    with e the epoch (0-based), E the run's epochs (``max_epochs``) and
    :math:`p_{e-1}(x_i)` the softmax the model gave sample i (by its index in the training
    set) during the previous training epoch. This is the official code's
    ``alpha_t = alpha_T * ((epoch + 1) / end_epoch)`` (lgcnsai/PS-KD-Pytorch, ``main.py``):
    the last epoch uses exactly :math:`a_T`. In epoch 0 the official stored prediction is
    the one-hot label, so the target is one-hot; here a sample with no stored prediction
    yet gets :math:`\varepsilon_i = 0`, the same target. PS-KD's default
    :math:`a_T = 0.8`. The loss is the official ``(-t * log_softmax).mean(0).sum()``, i.e.
    the mean over rows of the soft-target cross-entropy.

    State: an (N_train, K) float32 table of stored predictions (as the official code keeps
    them), N_train from the class counts given to :meth:`setup`, and which samples have
    one. During an epoch each rank collects the predictions of the samples it trains on
    (a per-epoch sum and count); :meth:`on_epoch_end` reduces them across ranks, so every
    rank holds the same table, each sample stored once (averaged if a sampler repeated it
    within the epoch). Memory: 2 x N_train x K x 4 bytes on the model's device (the table
    and the epoch's collection), 40 MB for CIFAR-100.

    Needs the batch's sample indices in training (``forward(..., indices=...)``; the
    datamodules yield ``(x, y, index)``). Without indices, e.g. for a validation loss, the
    target is one-hot. Indices outside ``[0, N_train)`` fail a device-side assertion.
    """

    name: ClassVar[str] = "self_distill"
    # smoothing reads no logit values; alpha ramps over the run's epochs
    limits = Limits(linear=None, needs_run_length=True)

    def __init__(self, alpha_T: float = 0.8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha_T = check_probability("alpha_T", alpha_T)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        if class_counts is None:
            raise ValueError(
                "SelfDistillSmoothing needs class_counts to size its per-sample table; "
                "pass setup(num_classes=..., class_counts=[...])"
            )
        super().setup(num_classes, class_counts)
        n = int(self.class_counts.sum())
        self.add_state("table", torch.zeros(n, num_classes))
        self.add_state("stored", torch.zeros(n, dtype=torch.bool))
        self.add_state("next_sum", torch.zeros(n, num_classes), reduce="sum")
        self.add_state("next_count", torch.zeros(n), reduce="sum")

    @property
    def alpha(self) -> float:
        """a_e = a_T * (e + 1) / E for the current epoch e (see :meth:`set_epoch`)."""
        check_run_length(self, self.max_epochs)
        return self.alpha_T * (min(self.epoch + 1, self.max_epochs) / self.max_epochs)

    def smoothing(
        self, logits: Tensor, targets: Tensor, indices: Tensor | None = None
    ) -> SoftTarget:
        if indices is None:
            return SoftTarget(0.0)
        idx = self._checked_indices(indices).to(self.table.device)
        # Rows without a stored prediction keep the one-hot target: epsilon 0 there.
        epsilon = self.alpha * self.stored[idx].to(logits.dtype).to(logits.device)
        return SoftTarget(epsilon, self.table, idx)

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
        device = self.next_sum.device
        idx = self._checked_indices(indices).to(device)
        keep = (y != self.ignore_index).to(device, torch.float32)
        p = torch.softmax(x.detach().float(), dim=-1).to(device)
        self.next_sum.index_add_(0, idx, p * keep.unsqueeze(1))
        self.next_count.index_add_(0, idx, keep)

    def update_state(self) -> None:
        seen = self.next_count > 0
        mean = self.next_sum / self.next_count.clamp(min=1).unsqueeze(1)
        self.table = torch.where(seen.unsqueeze(1), mean, self.table)
        self.stored = self.stored | seen

    def _checked_indices(self, indices: Tensor) -> Tensor:
        idx = indices.reshape(-1).long()
        n = self.table.shape[0]
        if idx.numel():
            # Device-side: no host sync on the training path.
            torch._assert_async(
                ((idx >= 0) & (idx < n)).all(),
                f"sample index out of range: allowed 0..{n - 1} (the training set)",
            )
        return idx

    def log_values(self) -> dict[str, float | Tensor]:
        return {"smoothing/epsilon": self.alpha * self.schedule_factor if self.max_epochs else 0.0}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "stored_predictions": int(self.stored.sum())}
