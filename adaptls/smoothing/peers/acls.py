"""Adaptive and conditional label smoothing, ACLS (Park et al., ICCV 2023)."""

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


class ACLSmoothing(CalibrationLoss):
    r"""Cross-entropy plus a squared penalty on the top logit and on logit distances:

    .. math:: \mathcal{L} = \frac{1}{N} \sum_i \mathrm{CE}_i + \alpha \Bigl[
        \lambda_{pos} \frac{1}{N} \sum_{i} \sum_{j: z_{ij} = M_i}
            \max(0, M_i - m)^2
        + \lambda_{neg} \frac{1}{N (K - 1)} \sum_{i} \sum_{j: z_{ij} \ne M_i}
            \max(0, \mathrm{sg}(M_i) - z_{ij} - m)^2 \Bigr],

    :math:`M_i = \max_j z_{ij}`, sg = stop-gradient. Defaults ``alpha`` = 0.1,
    ``pos_lambda`` = 1.0, ``neg_lambda`` = 0.1, ``margin`` m = 10
    (``configs/loss/acls.yaml``). As in the reference, a logit tied with the max counts as
    "positive" (each tie adds the positive term once; the max's gradient flows to the one
    index ``Tensor.max(dim)`` returns) and the gradient of the negative term does not flow
    into the max. N counts the rows whose target is not ``ignore_index``; row i's loss is
    :math:`\mathrm{CE}_i + \alpha [\lambda_{pos} \cdot + \lambda_{neg} \cdot / (K-1)]`
    and ``"mean"``/``"sum"``/``"none"`` reduce these rows.

    Source: github cvlab-yonsei/ACLS ``calibrate/losses/acls.py`` (``ACLS.get_reg``).
    Deliberate difference: the reference's regulariser ignores ``ignore_index`` (its CE
    skips -100 rows, its penalty averages over every row); here ignored rows leave both.
    Its ``num_classes`` argument comes from :meth:`setup`.

    A criterion (no soft target). The epsilon ``schedule`` scales alpha (s = 0: cross-entropy). Figures: ``smoothing/penalty`` (the
    unweighted bracket of the last training batch) and ``smoothing/alpha``.
    """

    name: ClassVar[str] = "acls"

    def __init__(
        self,
        alpha: float = 0.1,
        pos_lambda: float = 1.0,
        neg_lambda: float = 0.1,
        margin: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = check_nonnegative("alpha", alpha)
        self.pos_lambda = check_nonnegative("pos_lambda", pos_lambda)
        self.neg_lambda = check_nonnegative("neg_lambda", neg_lambda)
        self.margin = check_nonnegative("margin", margin)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        k = x.shape[1]
        counted = counted_rows(y, self.ignore_index)
        ce = F.cross_entropy(x, y, ignore_index=self.ignore_index, reduction="none")
        top = x.max(dim=1, keepdim=True).values  # (N, 1), gradient to one argmax
        top_sg = top.detach()
        is_top = x.detach() == top_sg
        positive = F.relu(top.squeeze(1) - self.margin).square() * is_top.sum(dim=1)
        negative = F.relu(top_sg - x - self.margin).square().masked_fill(is_top, 0.0).sum(dim=1)
        penalty = (self.pos_lambda * positive + self.neg_lambda / (k - 1) * negative) * counted
        alpha = self.alpha * self.schedule_factor
        if self.training:
            self._record(penalty=penalty.sum() / counted.sum().clamp_min(1))
        return reduce_rows(ce + alpha * penalty, counted, reduction)

    def log_values(self) -> dict[str, Any]:
        return {**super().log_values(), "smoothing/alpha": self.alpha * self.schedule_factor}
