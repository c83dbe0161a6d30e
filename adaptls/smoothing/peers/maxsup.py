"""Maximum suppression, MaxSup (Zhou et al., NeurIPS 2025)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from adaptls.checks import check_nonnegative
from adaptls.smoothing.base import Limits
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    reduce_rows,
)


class MaxSup(CalibrationLoss):
    r"""Cross-entropy plus a penalty on the top logit's lead over the mean logit:

    .. math:: \mathcal{L} = \frac{1}{N} \sum_i \Bigl[\mathrm{CE}_i
              + \lambda_e \bigl(\max_k z_{ik} - \tfrac{1}{K} \textstyle\sum_k z_{ik}\bigr)\Bigr],
              \qquad \lambda_e = \lambda_0 + (\lambda_1 - \lambda_0)\,\frac{e}{\max(1, E - 1)},

    e the 0-based training epoch of an E-epoch run: lambda rises linearly from
    ``begin_lambda`` (0.1) at the first epoch to ``end_lambda`` (0.2) at the last. Unlike
    label smoothing's :math:`z_{y} - \bar z` (the *target* logit's lead), the top logit is
    penalised whether or not the prediction is right. The mean runs over all K logits, the
    top one included; the gradient of the max flows to the one index ``Tensor.topk(1)``
    returns (as in the reference). N counts the rows whose target is not
    ``ignore_index``; ``"mean"``/``"sum"``/``"none"`` reduce the bracket.

    Source: github ZhouYuxuanYX/Maximum-Suppression-Regularization
    ``Conv/common_resnet/train.py`` (``lam = 0.1 + 0.1 * epoch / (args.epochs - 1)``) and
    ``LT/loss/MAXsupLoss.py`` (``MaxSupLoss``, the same with ``max(1, E - 1)``).
    ``Conv/ffcv/losses.py`` (``MaxSuppression``) divides by E instead of E - 1, so its
    lambda never reaches ``end_lambda``; the two scripts above are followed. Deliberate
    difference: ignored rows leave both terms (the reference has none).

    A criterion (no soft target). The epsilon ``schedule`` scales lambda on top of its own
    ramp (s = 0: cross-entropy). With ``begin_lambda != end_lambda`` the run's length is
    needed. Figures: ``smoothing/penalty`` (the unweighted mean lead of the last training
    batch) and ``smoothing/lambda`` (the lambda in use).
    """

    name: ClassVar[str] = "maxsup"

    def __init__(self, begin_lambda: float = 0.1, end_lambda: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.begin_lambda = check_nonnegative("begin_lambda", begin_lambda)
        self.end_lambda = check_nonnegative("end_lambda", end_lambda)

    @property
    def limits(self) -> Limits:  # type: ignore[override]
        return Limits(
            linear=CalibrationLoss.limits.linear,
            needs_run_length=self.begin_lambda != self.end_lambda,
        )

    @property
    def current_lambda(self) -> float:
        """lambda_e of the current epoch, the schedule's factor included."""
        ramp = self.epoch / max(1, (self.max_epochs or 1) - 1)
        ramp = min(ramp, 1.0)  # an epoch past the declared length keeps end_lambda
        lam = self.begin_lambda + (self.end_lambda - self.begin_lambda) * ramp
        return lam * self.schedule_factor

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        counted = counted_rows(y, self.ignore_index)
        ce = F.cross_entropy(x, y, ignore_index=self.ignore_index, reduction="none")
        lead = (x.topk(1, dim=1).values.squeeze(1) - x.mean(dim=1)) * counted
        if self.training:
            self._record(penalty=lead.sum() / counted.sum().clamp_min(1))
        return reduce_rows(ce + self.current_lambda * lead, counted, reduction)

    def log_values(self) -> dict[str, Any]:
        return {**super().log_values(), "smoothing/lambda": self.current_lambda}
