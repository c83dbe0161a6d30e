"""Sample-dependent focal loss FLSD-53 (Mukhoti et al. 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
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

#: p_t below which ``gamma_low`` applies, and below which (down to it) ``gamma_mid`` does.
LOW, HIGH = 0.2, 0.5


class AdaptiveFocalLoss(CalibrationLoss):
    r"""FLSD-53: focal loss whose exponent depends on the sample's own :math:`p_t`.

    .. math:: \ell_i = -(1 - p_t)^{\gamma(p_t)} \log p_t, \qquad
              \gamma(p_t) = \begin{cases} \gamma_{low} = 5 & p_t < 0.2 \\
                                          \gamma_{mid} = 3 & 0.2 \le p_t < 0.5 \\
                                          \gamma = 3 & p_t \ge 0.5 \end{cases}

    :math:`p_t = \mathrm{softmax}(x_i)_{y_i}`. The thresholds 0.2 and 0.5 are the
    reference's; 5 rounds its ``get_gamma(0.2)`` = 4.85, the gamma whose gradient factor
    :math:`g(p, \gamma)` equals 1 at p = 0.2. Gamma is chosen from the detached
    :math:`p_t` (no gradient through the choice, as in the reference, which builds it from
    ``.item()`` values).
    ``"mean"`` over the counted rows is the reference's ``size_average=True``.

    Source: github by-liu/MbLS ``calibrate/losses/focal_loss_adaptive_gamma.py`` (from
    torrvision/focal_calibration ``Losses/focal_loss_adaptive_gamma.py``): ``gamma`` is its
    configured ``gamma`` (3.0 in ``configs/loss/focal_adaptive.yaml``), ``gamma_low`` and
    ``gamma_mid`` its hard-coded ``gamma_dic``.

    Deliberate differences: the reference picks gamma in a Python loop over ``.item()``
    (a device sync per sample); here one ``torch.where``. :math:`1 - p_t` as in
    :class:`~adaptls.smoothing.peers.focal.FocalLoss` (``-expm1``, clamped: no NaN at
    :math:`p_t = 1`); ignored rows always dropped.

    A criterion (no soft target). The epsilon ``schedule`` scales all three gammas. Figures: ``smoothing/gamma_mean`` (mean gamma over the last training batch's
    counted rows) and ``smoothing/low_fraction`` (the fraction of them with
    :math:`p_t < 0.2`).
    """

    name: ClassVar[str] = "flsd"

    def __init__(
        self, gamma: float = 3.0, gamma_low: float = 5.0, gamma_mid: float = 3.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.gamma = check_nonnegative("gamma", gamma)
        self.gamma_low = check_nonnegative("gamma_low", gamma_low)
        self.gamma_mid = check_nonnegative("gamma_mid", gamma_mid)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        nll = F.cross_entropy(
            compute_dtype(x), y, ignore_index=self.ignore_index, reduction="none"
        )  # -log p_t, 0 on ignored rows
        log_pt = -nll
        counted = counted_rows(y, self.ignore_index)
        with torch.no_grad():
            pt = log_pt.exp()
            s = self.schedule_factor
            gamma = torch.full_like(pt, self.gamma * s)
            gamma = torch.where(pt < HIGH, self.gamma_mid * s, gamma)
            gamma = torch.where(pt < LOW, self.gamma_low * s, gamma)
        rows = focal_weight(one_minus_exp(log_pt), gamma) * nll
        if self.training:
            n = counted.sum().clamp_min(1)
            self._record(
                gamma_mean=(gamma * counted).sum() / n,
                low_fraction=(counted & (pt < LOW)).sum() / n,
            )
        return reduce_rows(rows, counted, reduction)
