"""Class-adaptive label smoothing by augmented Lagrangian, CALS (Liu et al., CVPR 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from adaptls.checks import check_int, check_positive
from adaptls.smoothing.peers._calibration import (
    CalibrationLoss,
    compute_dtype,
    counted_rows,
    reduce_rows,
)
from adaptls.smoothing.validation_pass import ValidationPass

#: The validation statistics of one pass: per-epoch sums, reduced in on_validation_end.
VALIDATION_STATES = ("val_grad_sum", "val_constraint_sum", "val_rows")


def margin_constraints(logits: Tensor, margin: float) -> Tensor:
    r""":math:`h_{ik} = (\max_j z_{ij} - z_{ik} - m) / m` (the reference's ``get_constraints``
    with ``normalize=True``; ``amax``: tied maxima share the gradient)."""
    return (logits.amax(dim=-1, keepdim=True) - logits - margin) / margin


def phr_penalty(h: Tensor, lambdas: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    r"""The PHR penalty and its derivative in h (``penalty.py``'s ``phr``), elementwise with
    :math:`x = \lambda + \rho h`:

    .. math:: P = \begin{cases} (x^2 - \lambda^2) / (2\rho) & x \ge 0 \\
                                -\lambda^2 / (2\rho) & x < 0 \end{cases}, \qquad
              P' = \max(x, 0)\ \text{(0 where } x < 0).
    """
    x = lambdas + rho * h
    inv = 1 / (2 * rho)
    sup = x >= 0
    value = torch.where(sup, inv * (x**2 - lambdas**2), -inv * lambdas**2)
    return value, torch.where(sup, x, torch.zeros_like(x))


class ClassAdaptiveMarginSmoothing(CalibrationLoss):
    r"""CALS: cross-entropy plus a per-class augmented-Lagrangian penalty on logit margins.

    Constraints :math:`h_{ik} = (\max_j z_{ij} - z_{ik} - m) / m \le 0` (logit distances
    within the margin m), penalised by PHR with per-class multipliers :math:`\lambda_k` and
    penalty parameters :math:`\rho_k` (:func:`phr_penalty`):

    .. math:: \mathcal{L} = \frac{1}{N} \sum_i \mathrm{CE}_i
              + \frac{1}{N K} \sum_{i,k} P(h_{ik}; \lambda_k, \rho_k).

    N counts the rows whose target is not ``ignore_index``; row i's loss is
    :math:`\mathrm{CE}_i + \frac{1}{K} \sum_k P_{ik}` and ``"mean"``/``"sum"``/``"none"``
    reduce these rows. :math:`\lambda, \rho` are constants of the loss (no gradient).

    Updates, from the validation passes of fit only (:meth:`observe_validation` collects,
    :meth:`on_validation_end` updates; a later ``validate``/``test`` moves nothing):

    - during the pass, per class k: :math:`\sum_i \mathrm{clamp}(P'(h_{ik}),
      \lambda_{min}, \lambda_{max})`, :math:`\sum_i h_{ik}` and the row count, with the
      multipliers in force; declared ``reduce="sum"`` states, summed across ranks at its
      end;
    - multipliers, when ``(epoch + 1) % lambda_step == 0``:
      :math:`\lambda_k \leftarrow \mathrm{clamp}(\overline{P'}_k, \lambda_{min},
      \lambda_{max})`;
    - penalty parameters, when ``rho_step > 0``: with :math:`\bar h_k` this pass's mean
      constraint and :math:`\bar h^{prev}_k` the previous pass's, on an epoch where
      ``(epoch + 1) % rho_step == 0``: :math:`\rho_k \leftarrow \gamma \rho_k` where
      :math:`\bar h_k > \tau \max(\bar h^{prev}_k, 0)` (the constraint did not improve
      enough), then clamped to :math:`[\rho_{min}, \rho_{max}]`; :math:`\bar h^{prev}`
      becomes :math:`\bar h` after every pass. Nothing moves before a previous pass exists.

    ``epoch`` is the 0-based training epoch the validation follows (the reference's
    ``epoch`` in ``eval_epoch``), so with ``rho_step`` 10 rho first moves after the 10th
    epoch. Defaults: the reference's ``configs/lag/aug_lagrangian_class.yaml`` (lambda
    1e-6..1e6, rho 1..10, rho_step 10, gamma 1.2, tau 0.9, PHR) with ``margin`` 10 (the
    README's commands for the paper's results set ``lag.margin=10``; the yaml's default
    is 20).

    Source: github by-liu/CALS ``calibrate/lagrangian/aug_lagrangian_class.py``
    (``AugLagrangianClass``), ``penalty.py`` (``phr``) and
    ``engine/distributed_lagrangian_trainer.py`` (when the updates run).

    Deliberate differences, none of which changes a single-process run that validates
    once per epoch:

    - across ranks the reference averages each rank's mean; here the sums and row counts
      are summed first, so the means are over all validation rows (the same when every
      rank has as many rows, as a ``DistributedSampler`` arranges);
    - rho steps at most once per training epoch, also when fit validates several times
      an epoch (``val_check_interval`` < 1; the reference validates once per epoch);
    - the previous mean constraint is checkpointed (the reference forgets it on resume);
    - ignored rows leave both terms (the reference's CE skips them, its penalty does
      not), and are left out of the validation statistics;
    - a validation pass without rows changes nothing (the reference divides by zero).

    Not ported: the ``p2``/``p3`` penalties and ``normalize=False`` (CALS uses PHR on
    normalised constraints). The epsilon ``schedule`` scales the penalty term (s = 0:
    cross-entropy). A criterion (no soft target).

    State (declared, checkpointed, identical on every rank): ``lambdas`` and ``rhos``
    (K,), ``prev_constraint`` (K,; NaN before the first pass), ``rho_epoch`` (the last
    epoch rho stepped). Figures: ``smoothing/penalty`` and ``smoothing/constraint`` (the
    last training batch's mean P and mean h), ``smoothing/lambda_mean``,
    ``smoothing/lambda_max``, ``smoothing/rho_mean``, ``smoothing/rho_max``.
    """

    name: ClassVar[str] = "cals"

    def __init__(
        self,
        margin: float = 10.0,
        lambda_min: float = 1e-6,
        lambda_max: float = 1e6,
        lambda_step: int = 1,
        rho_min: float = 1.0,
        rho_max: float = 10.0,
        rho_step: int = 10,
        rho_growth: float = 1.2,
        tau: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.margin = check_positive("margin", margin)
        self.lambda_min = check_positive("lambda_min", lambda_min)
        self.lambda_max = check_positive("lambda_max", lambda_max)
        self.rho_min = check_positive("rho_min", rho_min)
        self.rho_max = check_positive("rho_max", rho_max)
        self.rho_growth = check_positive("rho_growth", rho_growth)
        self.tau = check_positive("tau", tau)
        for low, high in (("lambda_min", "lambda_max"), ("rho_min", "rho_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"need {low} <= {high}, got {getattr(self, low)} and {getattr(self, high)}"
                )
        self.lambda_step = check_int("lambda_step", lambda_step, minimum=1)
        self.rho_step = check_int("rho_step", rho_step, minimum=0)

    def setup(self, num_classes: int, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().setup(num_classes, class_counts)
        k, f64 = num_classes, torch.float64
        self.add_state("lambdas", torch.full((k,), self.lambda_min, dtype=f64))
        self.add_state("rhos", torch.full((k,), self.rho_min, dtype=f64))
        self.add_state("prev_constraint", torch.full((k,), float("nan"), dtype=f64))
        self.add_state("rho_epoch", torch.tensor(-1, dtype=torch.int64))
        self.add_state("val_grad_sum", torch.zeros(k, dtype=f64), reduce="sum")
        self.add_state("val_constraint_sum", torch.zeros(k, dtype=f64), reduce="sum")
        self.add_state("val_rows", torch.zeros((), dtype=f64), reduce="sum")

    def loss(self, x: Tensor, y: Tensor, indices: Tensor | None, reduction: str) -> Tensor:
        x = compute_dtype(x)
        counted = counted_rows(y, self.ignore_index)
        ce = F.cross_entropy(x, y, ignore_index=self.ignore_index, reduction="none")
        h = margin_constraints(x, self.margin)
        p, _ = phr_penalty(h, self.lambdas.to(x.dtype), self.rhos.to(x.dtype))
        penalty = torch.where(counted, p.mean(dim=1), 0.0)
        s = self.schedule_factor
        if self.training:
            n = counted.sum().clamp_min(1)
            constraint = torch.where(counted, h.mean(dim=1), 0.0)
            self._record(penalty=penalty.sum() / n, constraint=constraint.sum() / n)
        return reduce_rows(ce + s * penalty, counted, reduction)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def observe_validation(self, logits: Tensor, targets: Tensor) -> None:
        x, y = self._flatten_checked(logits, targets)
        x = compute_dtype(x)
        counted = counted_rows(y, self.ignore_index).unsqueeze(1)
        h = margin_constraints(x, self.margin)
        _, grad = phr_penalty(h, self.lambdas.to(x.dtype), self.rhos.to(x.dtype))
        grad = grad.clamp(self.lambda_min, self.lambda_max)
        f64 = torch.float64
        self.val_grad_sum += torch.where(counted, grad, 0.0).sum(0, dtype=f64)
        self.val_constraint_sum += torch.where(counted, h, 0.0).sum(0, dtype=f64)
        self.val_rows += counted.sum().to(f64)

    @torch.no_grad()
    def on_validation_end(self, validation: ValidationPass) -> None:
        self._reduce_states(*VALIDATION_STATES)  # a collective: every rank is here
        rows = float(self.val_rows)
        if rows > 0:
            self._update(rows)
        for name in VALIDATION_STATES:
            getattr(self, name).zero_()

    def _update(self, rows: float) -> None:
        epoch = self.epoch
        if (epoch + 1) % self.lambda_step == 0:
            mean_grad = self.val_grad_sum / rows
            self.lambdas = mean_grad.clamp(self.lambda_min, self.lambda_max)
        if self.rho_step > 0:
            constraint = self.val_constraint_sum / rows
            if (epoch + 1) % self.rho_step == 0 and int(self.rho_epoch) != epoch:
                grow = constraint > self.prev_constraint.clamp(min=0) * self.tau  # NaN: no
                rhos = torch.where(grow, self.rho_growth * self.rhos, self.rhos)
                self.rhos = rhos.clamp(self.rho_min, self.rho_max)
                self.rho_epoch.fill_(epoch)
            self.prev_constraint = constraint

    # ------------------------------------------------------------------ reporting
    def log_values(self) -> dict[str, Any]:
        if self.num_classes is None:
            return super().log_values()
        return {
            **super().log_values(),
            "smoothing/lambda_mean": self.lambdas.mean(),
            "smoothing/lambda_max": self.lambdas.max(),
            "smoothing/rho_mean": self.rhos.mean(),
            "smoothing/rho_max": self.rhos.max(),
        }
