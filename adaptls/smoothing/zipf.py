"""Zipf's label smoothing (Liang et al., ECCV 2022)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from adaptls.checks import check_choice, check_nonnegative
from adaptls.losses._fused import fused_soft_target_cross_entropy
from adaptls.smoothing.base import check_epsilon
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    reduce_rows,
)

FORMS = ("kl", "soft_target")


@torch.no_grad()
def zipf_prior(logits: Tensor, targets: Tensor, power: float, ignore_index: int = -100) -> Tensor:
    r"""The per-row Zipf distribution over the non-target classes, (N, K), 0 at the target.

    .. math:: q_{ik} \propto r_{ik}^{-\text{power}} \ (k \ne y_i), \qquad
              r_{ik} = 1 + \#\{j : z_{ij} > z_{ik}\}

    r is the rank of class k among *all* K logits of row i (the target included, so with a
    top-ranked target the non-targets start at rank 2), ties taking the lowest rank
    (``scipy.stats.rankdata(-z, method="min")``, as the authors' ``gen_pdf``). No gradient.
    Rows whose target is ``ignore_index`` are all zero. One sort per row: O(K log K).
    """
    z = logits.detach()
    k = z.shape[1]
    ascending = z.sort(dim=1).values
    at_most = torch.searchsorted(ascending, z.contiguous(), right=True)  # #{j: z_j <= z_k}
    rank = (k - at_most + 1).to(z.dtype)
    weight = rank.pow(-power)
    counted = targets != ignore_index
    safe = torch.where(counted, targets, 0)
    weight = weight.scatter(1, safe.unsqueeze(1), 0.0) * counted.unsqueeze(1)
    return weight / weight.sum(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)


class ZipfSmoothing(CalibrationLoss):
    r"""Zipf's label smoothing: the non-target mass follows a Zipf law over the ranks of
    the model's own (detached) predictions.

    With :math:`q_i` the :func:`zipf_prior` of row i (non-target classes only), the
    authors' loss (``form="kl"``, the default) is

    .. math:: \ell_i = \mathrm{CE}_i + \lambda\,
              \mathrm{KL}\bigl(q_i \,\|\, \mathrm{softmax}(z_{i, k \ne y_i})\bigr),

    the KL against the softmax over the K - 1 *non-target* logits only, so it shapes how
    the non-target mass is spread and leaves the target's probability to the CE. This is
    not a soft-target cross-entropy: rewritten over the full softmax p it is
    :math:`(1+\lambda)\,\mathrm{CE}(t) + \lambda \log(1 - p_{y}) + \text{const}` with
    :math:`t = \frac{1}{1+\lambda}\mathrm{onehot} + \frac{\lambda}{1+\lambda} q`, the
    :math:`\log(1 - p_y)` term rewarding confidence in the target.

    ``form="soft_target"`` (off by default, a deviation) trains against the soft target
    :math:`t_i = (1 - \varepsilon)\,\mathrm{onehot}(y_i) + \varepsilon\, q_i` through the fused
    soft-target loss, q a per-row prior: the authors' ``label_smooth_zipf`` criterion
    (``LabelZipfSmoothLoss``), which in their code cannot run (``ls_zipf_loss`` calls
    ``gen_pdf`` without its first argument) and is not the method of the paper.

    Defaults: ``loss_lambda`` = 1.0 and ``power`` = 1.0 (``train.py``'s argparse defaults;
    its README uses lambda 0.1 on CIFAR-100, 1.0 on TinyImageNet), ``epsilon`` = 0.2
    (``--smooth_ratio``, used by ``form="soft_target"`` only).

    Source: github megvii-research/zipfls ``pytorch_zipfls/losses.py`` (``zipf_loss``,
    ``gen_pdf`` with ``distribution="rank_zipf"``, ``rank="hard"``, ``kl_loss``) and
    ``train.py`` (``total_loss = xent + loss_lambda * kd_loss``). Deliberate differences:
    the ranks come from the logits (their ``dense=False`` path; the paper's ``--dense``
    ranks by votes of per-pixel predictions of the last feature map, which a
    logits-only model does not have); their ``--mask`` option (the KL over correctly
    classified rows only, off by default) is not ported; ignored rows leave both terms.

    A criterion (the default form is no soft-target CE). The epsilon ``schedule`` scales
    lambda (``kl``) or epsilon (``soft_target``); s = 0 is cross-entropy. Figures:
    ``smoothing/kl`` (the unweighted mean KL of the last training batch, ``kl`` form).
    """

    name: ClassVar[str] = "zipf"

    def __init__(
        self,
        loss_lambda: float = 1.0,
        power: float = 1.0,
        form: str = "kl",
        epsilon: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.loss_lambda = check_nonnegative("loss_lambda", loss_lambda)
        self.power = check_nonnegative("power", power)
        self.form = check_choice("form", form, FORMS)
        self.epsilon = check_epsilon("epsilon", epsilon)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        q = zipf_prior(x, y, self.power, self.ignore_index)
        if self.form == "soft_target":
            eps = self.epsilon * self.schedule_factor
            return fused_soft_target_cross_entropy(x, y, eps, q, None, self.ignore_index, reduction)
        counted = counted_rows(y, self.ignore_index)
        ce = F.cross_entropy(x, y, ignore_index=self.ignore_index, reduction="none")
        # a scatter, not F.one_hot, which reads the targets' range on the host (a sync)
        safe = torch.where(counted, y, 0).unsqueeze(1)
        is_target = torch.zeros_like(x, dtype=torch.bool).scatter_(1, safe, True)
        log_rest = torch.logsumexp(x.masked_fill(is_target, float("-inf")), dim=1, keepdim=True)
        # sum_{k != y} q_k (log q_k - log softmax_rest_k); q = 0 at the target and on ignored rows
        kl = (torch.special.xlogy(q, q) - q * (x - log_rest)).sum(dim=1) * counted
        if self.training:
            self._record(kl=kl.sum() / counted.sum().clamp_min(1))
        lam = self.loss_lambda * self.schedule_factor
        return reduce_rows(ce + lam * kl, counted, reduction)

    def log_values(self) -> dict[str, Any]:
        if self.form == "soft_target":
            return {"smoothing/epsilon": self.epsilon * self.schedule_factor}
        return {**super().log_values(), "smoothing/lambda": self.loss_lambda * self.schedule_factor}
