"""Dual focal loss (Tao, Dong and Xu, ICML 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from adaptls.checks import check_nonnegative
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    focal_weight,
    one_minus_exp,
    reduce_rows,
)


class DualFocalLoss(CalibrationLoss):
    r"""Dual focal loss: :math:`\ell_i = -(1 - p_{i,y_i} + p_{i,j})^{\gamma} \log p_{i,y_i}`.

    :math:`p = \mathrm{softmax}(x_i)` and :math:`p_{i,j}` is the largest probability
    strictly below :math:`p_{i,y_i}` (0 when there is none: the true class has the
    smallest probability, or every probability is equal). Unlike focal loss, a correct and
    confident prediction is still pushed while the runner-up keeps probability mass. The
    gradient flows through both :math:`p_{i,y_i}` and :math:`p_{i,j}` (not through the
    choice of j). ``gamma`` = 5, the authors' value for CIFAR-10/100 ResNet-50 (their
    README table lists 2.3 to 6.1 by dataset and model; the code's own default 0 is plain
    cross-entropy). ``"mean"`` over the counted rows is the reference's
    ``size_average=True``; its default ``size_average=False`` is ``"sum"``.

    Source: github Linwei94/ICML2023-DualFocalLoss ``dual_focal_loss.py``.

    Deliberate differences: the reference has no ``ignore_index`` (here those rows are
    dropped); :math:`1 - p_y` is computed as ``-expm1(log p_y)`` and the base is clamped to
    the smallest normal number as in :class:`~adaptls.smoothing.peers.focal.FocalLoss` (no NaN
    for ``gamma < 1`` at :math:`p_y = 1`); :math:`p_j` by a masked ``max`` instead of
    ``topk(.., 1)``.

    A criterion (no soft target: the gradient also pulls on the runner-up). The epsilon ``schedule`` scales gamma (s = 0: cross-entropy). Figures:
    ``smoothing/gamma`` and ``smoothing/runner_up`` (mean :math:`p_j` of the last training
    batch's counted rows).
    """

    name: ClassVar[str] = "dual_focal"

    def __init__(self, gamma: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = check_nonnegative("gamma", gamma)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        counted = counted_rows(y, self.ignore_index)
        log_p = torch.log_softmax(x, dim=1)
        p = log_p.exp()
        safe = torch.where(counted, y, 0).unsqueeze(1)
        log_pt = log_p.gather(1, safe).squeeze(1)
        below = p.detach() < log_pt.detach().exp().unsqueeze(1)
        runner_up = (p * below).max(dim=1).values
        base = one_minus_exp(log_pt) + runner_up
        rows = torch.where(counted, focal_weight(base, self.gamma * self.schedule_factor), 0.0)
        rows = rows * -log_pt
        if self.training:
            self._record(runner_up=(runner_up * counted).sum() / counted.sum().clamp_min(1))
        return reduce_rows(rows, counted, reduction)

    def log_values(self) -> dict[str, Any]:
        return {**super().log_values(), "smoothing/gamma": self.gamma * self.schedule_factor}
