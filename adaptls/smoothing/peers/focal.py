"""Focal loss (Lin et al. 2017), as used for calibration by Mukhoti et al. 2020."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
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


class FocalLoss(CalibrationLoss):
    r"""Focal loss: :math:`\ell_i = -(1 - p_{i,y_i})^{\gamma} \log p_{i,y_i}`.

    :math:`p = \mathrm{softmax}(x_i)`; ``gamma`` = 3 by default (the MbLS configs and the
    FL-3 row of Mukhoti et al.); ``gamma=0`` is plain cross-entropy. Rows whose target is
    ``ignore_index`` are dropped; ``"mean"`` averages the counted rows (the reference's
    ``size_average=True``), ``"sum"`` is its ``size_average=False``.

    Source: github by-liu/MbLS ``calibrate/losses/focal_loss.py`` (the same formula as
    torrvision/focal_calibration ``Losses/focal_loss.py``).

    Deliberate differences, none of which changes the value beyond rounding:
    :math:`1 - p_t` is computed as ``-expm1(log p_t)`` (exact near :math:`p_t = 1`) and
    clamped to the smallest normal number, so :math:`\gamma < 1` has no ``0 * inf`` NaN at
    :math:`p_t = 1`; the reference drops ignored rows only when ``ignore_index >= 0`` (a
    target -100 fails its ``gather``), here they are always dropped.

    A criterion (no soft target). The epsilon ``schedule`` scales gamma (s = 0:
    cross-entropy). Figures: ``smoothing/gamma`` (the gamma in use).
    """

    name: ClassVar[str] = "focal"

    def __init__(self, gamma: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = check_nonnegative("gamma", gamma)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        nll = F.cross_entropy(
            compute_dtype(x), y, ignore_index=self.ignore_index, reduction="none"
        )  # -log p_t, 0 on ignored rows
        gamma = self.gamma * self.schedule_factor
        rows = focal_weight(one_minus_exp(-nll), gamma) * nll
        return reduce_rows(rows, counted_rows(y, self.ignore_index), reduction)

    def log_values(self) -> dict[str, Any]:
        return {"smoothing/gamma": self.gamma * self.schedule_factor}
