"""Margin-based label smoothing, MbLS (Liu et al., CVPR 2022)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from adaptls.checks import check_nonnegative
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    reduce_rows,
)


class MarginSmoothing(CalibrationLoss):
    r"""Cross-entropy plus a linear penalty on logit distances beyond a margin:

    .. math:: \mathcal{L} = \frac{1}{N} \sum_i \mathrm{CE}_i + \alpha\,
              \frac{1}{N K} \sum_{i,k} \max\bigl(0,\ \max_j z_{ij} - z_{ik} - m\bigr),

    ``margin`` m = 10, ``alpha`` = 0.1 (the paper's and ``configs/loss/logit_margin.yaml``'s
    defaults). The mean of the penalty runs over all N x K entries, the max class
    included (its distance is 0). N counts the rows whose target is not ``ignore_index``,
    so row i's loss is :math:`\mathrm{CE}_i + \frac{\alpha}{K} \sum_k (\cdot)` and
    ``"mean"``/``"sum"``/``"none"`` reduce these rows. The gradient of the max flows to
    the argmax logit (``Tensor.max(dim)``, as in the reference).

    Source: github by-liu/MbLS ``calibrate/losses/logit_margin_l1.py`` (``LogitMarginL1``).
    Deliberate difference: the reference drops ignored rows only when
    ``ignore_index >= 0``; with -100 its CE skips them but its penalty still averages over
    them. Here they leave both terms. Not ported: its alpha schedules (``schedule``/``mu``/``max_alpha``/``step_size``,
    unused for the paper's results); this package's epsilon ``schedule`` scales alpha
    instead (s = 0: cross-entropy).

    A criterion (no soft target: the penalty acts on logits). Figures: ``smoothing/penalty`` (the unweighted
    penalty of the last training batch) and ``smoothing/alpha`` (the alpha in use).
    """

    name: ClassVar[str] = "mbls"

    def __init__(self, margin: float = 10.0, alpha: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margin = check_nonnegative("margin", margin)
        self.alpha = check_nonnegative("alpha", alpha)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        counted = counted_rows(y, self.ignore_index)
        ce = F.cross_entropy(x, y, ignore_index=self.ignore_index, reduction="none")
        distance = x.max(dim=1, keepdim=True).values - x
        penalty = F.relu(distance - self.margin).mean(dim=1) * counted
        alpha = self.alpha * self.schedule_factor
        if self.training:
            self._record(penalty=penalty.sum() / counted.sum().clamp_min(1))
        return reduce_rows(ce + alpha * penalty, counted, reduction)

    def log_values(self) -> dict[str, Any]:
        return {**super().log_values(), "smoothing/alpha": self.alpha * self.schedule_factor}
