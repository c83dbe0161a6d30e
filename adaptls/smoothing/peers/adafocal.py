"""AdaFocal: calibration-aware adaptive focal loss (Ghosh et al., NeurIPS 2022)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from adaptls.checks import check_int, check_nonnegative, check_real
from adaptls.smoothing._distributed import all_gather_cat
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    one_minus_exp,
    reduce_rows,
)
from adaptls.smoothing.validation_pass import ValidationPass

#: Added to the focal base, as in the reference ("for numerical stability").
TINY = 1e-20


def equal_mass_edges(sorted_values: Tensor, num_bins: int) -> Tensor:
    """The B + 1 edges of equal-mass bins of ascending float64 ``sorted_values`` (n >= 1):
    ``np.interp(np.linspace(0, n, B + 1), np.arange(n), sorted_values)``, the reference's
    ``histedges_equalN`` (from torrvision/focal_calibration), in the same float64 steps."""
    n = sorted_values.numel()
    position = torch.arange(num_bins + 1, dtype=torch.float64, device=sorted_values.device)
    position = position * (n / num_bins)  # np.linspace: j * step, the last one exactly n
    position[-1] = n
    low = position.floor().long().clamp(max=n - 1)
    high = (low + 1).clamp(max=n - 1)
    y0, y1 = sorted_values[low], sorted_values[high]
    offset = position - low
    edges = (y1 - y0) * offset + y0  # np.interp: slope * (x - xp[j]) + fp[j]
    edges = torch.where(offset == 0, y0, edges)  # an exact hit returns fp[j]
    return torch.where(position >= n - 1, sorted_values[-1], edges)  # at or past the end


def validation_gaps(confidence: Tensor, correct: Tensor, num_bins: int) -> tuple[Tensor, Tensor]:
    """Equal-mass bin edges (B + 1, float64) of the (n,) top-1 ``confidence`` values
    (float32 numbers) and each bin's gap, mean confidence - accuracy (0 for an empty bin),
    as the reference's ``adaECE_error_mukhoti`` computes them.

    As there, bin b holds the confidences in (edge_b, edge_b+1], compared in float32 (the
    confidences' dtype, to which ``Tensor.gt``/``le`` round the float64 edges), so the
    smallest confidence is in no bin; sums run in float64 over the sorted values, so the
    result does not depend on the rows' order.
    """
    values, order = confidence.double().sort()
    correct = correct.double()[order]
    edges = equal_mass_edges(values, num_bins)
    c32, e32 = values.float(), edges.float()
    bins = torch.searchsorted(e32[1:].contiguous(), c32)  # first b with c <= upper_b
    inside = (c32 > e32[0]) & (bins < num_bins)  # and lower_b < c
    bins = torch.where(inside, bins, 0)
    weight = inside.double()
    zeros = values.new_zeros(num_bins)
    count = zeros.index_add(0, bins, weight)
    conf_sum = zeros.index_add(0, bins, values * weight)
    correct_sum = zeros.index_add(0, bins, correct * weight)
    filled = count > 0
    safe = count.clamp_min(1)
    gaps = torch.where(filled, conf_sum / safe - correct_sum / safe, 0.0)
    return edges, gaps


class AdaFocalLoss(CalibrationLoss):
    r"""AdaFocal: focal loss whose exponent follows each confidence bin's validation gap.

    B equal-mass bins (``num_bins`` = 15) each hold a :math:`\gamma_b` (start
    ``gamma_init`` = 1). A training sample takes the :math:`\gamma` of the bin its
    :math:`p_t = \mathrm{softmax}(x_i)_{y_i}` falls in (its *true-class* probability, as in
    the reference's ``get_gamma_per_sample``; bin b covers [lower_b, upper_b), the first
    bin everything below, the last everything above), and

    .. math:: \ell_i = -\bigl(1 - \mathrm{sign}(\gamma)\, p_t + 10^{-20}\bigr)^{|\gamma|}
              \log p_t,

    the focal loss for :math:`\gamma > 0`, the inverse-focal :math:`(1 + p_t)^{|\gamma|}`
    weighting for :math:`\gamma < 0`. :math:`\gamma` is chosen from the detached
    :math:`p_t` (no gradient through the choice); the weight's gradient flows.

    After every validation pass of fit (and only then: a later ``validate``/``test``
    moves nothing): equal-mass bins on the pass's top-1 confidences, each with its gap
    :math:`g_b` = mean confidence - accuracy (:func:`validation_gaps`), and per bin

    .. math:: \gamma_b \leftarrow \gamma_b\, e^{\lambda g_b}\ (\gamma_b > 0), \quad
              \gamma_b\, e^{-\lambda g_b}\ (\text{else}),

    then, if :math:`|\gamma_b|` < ``switch_point`` (0.2), it becomes -0.2 when positive and
    +0.2 otherwise (focal <-> inverse focal), then is clipped to
    [``gamma_min``, ``gamma_max``] = [-2, 20]; the bin boundaries become the pass's bins'.
    ``lamda`` (the authors' spelling; ``lambda`` is a Python keyword) = 1. Until the first
    pass the bins are the reference's equal-width [b/B, (b+1)/B).

    Distributed: equal-mass edges need every validation confidence, so each rank keeps its
    pass's (confidence, correct) rows (:meth:`observe_validation`; two float64 numbers a
    row, bounded by the validation set, released at the end of the pass) and
    :meth:`on_validation_end` gathers them from every rank
    (:func:`~adaptls.smoothing._distributed.all_gather_cat`). Every rank then computes the
    same bins and gammas from the same sorted values: those of one process seeing all
    validation rows. (No O(B) summary gives the exact quantile edges.) The rows never
    outlive a pass, so they are not declared state; a checkpoint holds the result.

    Source: github 3mcloud/adafocal ``losses/adafocal.py`` (``AdaFocal``),
    ``utils/metrics.py`` (``adaECE_error_mukhoti``: the bins and gaps),
    ``utils/train_utils.py`` (one update after each training epoch, ``update_gamma_every``
    = -1, its default), ``main.py`` (the defaults).

    Deliberate differences:

    - ``"mean"`` over the counted rows by default, as every loss here; the reference sums
      (``loss.sum()``, with a summed CE baseline): ``reduction="sum"`` is its value;
    - :math:`1 - p_t` for :math:`\gamma > 0` is ``-expm1(log p_t)`` (exact near
      :math:`p_t = 1`; the same up to rounding), in float64 with float64 logits (the
      reference's per-sample gammas are float32);
    - gaps are averaged in float64 (the reference: float32 means);
    - ignored rows are dropped from the loss and the validation statistics; a pass without
      rows changes nothing (the reference fails on it);
    - not ported: ``update_gamma_every`` > 0 (updates every n training batches).

    The epsilon ``schedule`` scales the gammas (s = 0: cross-entropy). A criterion (no soft
    target). State (declared, checkpointed, identical on every rank):
    ``gammas`` (B,), ``bin_edges`` (B + 1,), ``gaps`` (B,; NaN before the first pass).
    Figures: ``smoothing/gamma_mean`` and ``smoothing/inverse_fraction`` (mean gamma and
    the fraction of rows with gamma < 0 in the last training batch), ``smoothing/gap``
    (the last validation pass's mean |gap| over bins).
    """

    name: ClassVar[str] = "adafocal"

    def __init__(
        self,
        num_bins: int = 15,
        lamda: float = 1.0,
        gamma_init: float = 1.0,
        switch_point: float = 0.2,
        gamma_min: float = -2.0,
        gamma_max: float = 20.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_bins = check_int("num_bins", num_bins, minimum=1)
        self.lamda = check_nonnegative("lamda", lamda)
        self.switch_point = check_nonnegative("switch_point", switch_point)
        self.gamma_init = check_real("gamma_init", gamma_init)
        self.gamma_min = check_real("gamma_min", gamma_min)
        self.gamma_max = check_real("gamma_max", gamma_max)
        if self.gamma_min > self.gamma_max:
            raise ValueError(
                f"need gamma_min <= gamma_max, got {self.gamma_min} and {self.gamma_max}"
            )
        b, f64 = self.num_bins, torch.float64
        self.add_state("gammas", torch.full((b,), self.gamma_init, dtype=f64))
        # the reference's initial bins: lower b * (1/B), upper (b + 1) * (1/B)
        self.add_state("bin_edges", torch.arange(b + 1, dtype=f64) * (1 / b))
        self.add_state("gaps", torch.full((b,), float("nan"), dtype=f64))
        self._validation: list[Tensor] = []  # this pass's (confidence, correct, counted)

    def bin_of(self, pt: Tensor) -> Tensor:
        """The bin of each (detached) p_t: the reference's lookup, vectorised. With
        contiguous, non-decreasing bounds its loop picks the number of inner bounds <= p_t
        (NaN: the last bin, as its loop falls through)."""
        inner = self.bin_edges[1:-1].contiguous()
        return torch.searchsorted(inner, pt.to(inner.dtype), right=True)

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        nll = F.cross_entropy(
            compute_dtype(x), y, ignore_index=self.ignore_index, reduction="none"
        )  # -log p_t, 0 on ignored rows
        log_pt = -nll
        counted = counted_rows(y, self.ignore_index)
        with torch.no_grad():
            gamma = self.gammas[self.bin_of(log_pt.exp())].to(nll.dtype) * self.schedule_factor
        pt = log_pt.exp()
        base = torch.where(gamma > 0, one_minus_exp(log_pt), 1 - torch.sign(gamma) * pt) + TINY
        rows = base.pow(gamma.abs()) * nll
        if self.training:
            n = counted.sum().clamp_min(1)
            self._record(
                gamma_mean=torch.where(counted, gamma, 0.0).sum() / n,
                inverse_fraction=(counted & (gamma < 0)).sum() / n,
            )
        return reduce_rows(rows, counted, reduction)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        x, y = self._flatten_checked(logits, targets)
        log_conf, prediction = F.log_softmax(compute_dtype(x), dim=1).max(dim=1)
        confidence = log_conf.exp().float()  # the reference keeps float32 confidences
        correct = prediction == y
        counted = counted_rows(y, self.ignore_index)
        rows = torch.stack([confidence.double(), correct.double(), counted.double()], dim=1)
        self._validation.append(rows)  # filtered at the end of the pass: no sync per step

    @torch.no_grad()
    def on_validation_end(self, validation: ValidationPass) -> None:
        parts, self._validation = self._validation, []
        local = torch.cat(parts) if parts else self.gammas.new_zeros((0, 3))
        rows = all_gather_cat(local.to(self.gammas.device))  # a collective: every rank is here
        rows = rows[rows[:, 2] > 0]
        if rows.shape[0] == 0:
            return
        edges, gaps = validation_gaps(rows[:, 0], rows[:, 1], self.num_bins)
        self.gammas = self.updated_gammas(gaps)
        self.bin_edges = edges
        self.gaps = gaps

    def updated_gammas(self, gaps: Tensor) -> Tensor:
        """One AdaFocal step of every bin's gamma from its gap (``update_bin_stats``)."""
        gamma = self.gammas
        step = torch.where(gamma > 0, self.lamda * gaps, -self.lamda * gaps)
        gamma = gamma * torch.exp(step)
        switch = self.switch_point
        switched = torch.where(gamma > 0, gamma.new_tensor(-switch), gamma.new_tensor(switch))
        gamma = torch.where(gamma.abs() < switch, switched, gamma)
        return gamma.clamp(self.gamma_min, self.gamma_max)

    # ------------------------------------------------------------------ reporting
    def log_values(self) -> dict[str, Any]:
        return {**super().log_values(), "smoothing/gap": self.gaps.abs().mean()}

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        summary["gamma_per_bin"] = self.gammas.tolist()
        summary["bin_edges"] = self.bin_edges.tolist()
        return summary
