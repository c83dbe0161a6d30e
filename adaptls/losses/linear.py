r"""The classifier layer fused with the soft-target cross-entropy, for vocabulary-sized V.

For row i with hidden state :math:`h_i \in \mathbb{R}^D`, the logits are
:math:`z_i = W h_i + b \in \mathbb{R}^V` and the loss is the soft-target cross-entropy of
:func:`~adaptls.smoothing.soft_target_cross_entropy`:

.. math::
    t_i = (1 - \varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i\, u_i, \qquad
    \ell_i = \mathrm{logsumexp}(z_i) - (1 - \varepsilon_i)\, z_{i y_i}
             - \varepsilon_i \langle u_i, z_i \rangle,

with :math:`\partial \ell_i / \partial z_i = \mathrm{softmax}(z_i) - t_i =: g_i`, so
:math:`\partial h_i = W^\top g_i`, :math:`\partial W = \sum_i g_i h_i^\top`,
:math:`\partial b = \sum_i g_i`. A shared prior u (uniform or one (V,) distribution) is
linear in the logits: :math:`\langle u, z_i \rangle = h_i \cdot (W^\top u) + b \cdot u`, so
its part of the loss and of all three gradients costs O(N D + V D), not O(N V).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from adaptls.losses import soft_target
from adaptls.losses._fused import explain_bad_indices
from adaptls.losses._fused_linear import fused_linear_soft_target_cross_entropy
from adaptls.losses.soft_target import check_reduction, check_soft_target, check_target_dtype

__all__ = ["linear_soft_target_cross_entropy"]


def linear_soft_target_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    epsilon: float | Tensor = 0.0,
    prior: Tensor | None = None,
    *,
    prior_index: Tensor | None = None,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""``soft_target_cross_entropy(F.linear(hidden, weight, bias), targets, epsilon, prior,
    ...)`` without ever holding the N x V logits.

    The loss of row i, with logits :math:`z_i = W h_i + b` and soft target
    :math:`t_i = (1-\varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i u_i`, is

    .. math::
        \ell_i = -\langle t_i, \log\mathrm{softmax}(z_i) \rangle
               = \mathrm{logsumexp}(z_i) - (1-\varepsilon_i)\, z_{iy_i}
                 - \varepsilon_i \langle u_i, z_i\rangle .

    Convention: with ``prior=None`` the prior is uniform 1/V over *all* classes, the true
    one included, so the target class gets :math:`1 - \varepsilon + \varepsilon/V` and
    every other class :math:`\varepsilon/V` (PyTorch's ``label_smoothing=e``; not
    fairseq's current e/(V-1) on the others).

    Args:
        hidden: (..., D) floating point (float32, bfloat16, float16 or float64).
        weight: (V, D), the classifier's weight, same dtype as ``hidden``.
        targets: (...) integer class indices in ``[0, V)`` or ``ignore_index``.
        epsilon: a float in [0, 1], a 0-d tensor, or a tensor shaped like ``targets``.
        prior: ``None`` for uniform 1/V; a (V,) distribution shared by all rows; an (N, V)
            per-row distribution (N = rows after flattening the leading dims; a tensor
            shaped (..., V) is accepted too); or, with ``prior_index``, an (M, V) table.
        prior_index: optional integer tensor shaped like ``targets``; row i then uses
            ``prior[prior_index[i]]`` (gathered chunk by chunk).
        bias: optional (V,) bias, same dtype as ``weight``.
        ignore_index: rows with this target contribute nothing (no loss, zero gradients).
        reduction: ``"mean"`` over the counted rows, ``"sum"``, or ``"none"`` (shaped like
            ``targets``, 0 on ignored rows). With every row ignored, ``"mean"`` is 0 with
            zero gradients, never NaN.

    Returns the loss in the accumulation dtype (float32, or float64 for float64 inputs),
    like :func:`~adaptls.smoothing.soft_target_cross_entropy`; gradients of ``hidden``,
    ``weight`` and ``bias`` come back in their own dtypes. ``epsilon`` and ``prior`` are
    targets: no gradient flows to them.

    How: rows are processed in chunks; each chunk's logits are one matmul into a reused
    (rows, V) float32 buffer, and the chunk's contributions to the gradients of hidden,
    weight and bias are computed right there (in the forward for ``"mean"``/``"sum"``, then
    scaled by the incoming gradient in the backward; ``"none"`` recomputes in the backward).
    Low-precision inputs accumulate in float32: the logits, the softmax and the gradients
    are float32 until the gradients are handed out (on CPU the weight is upcast once, a V x
    D copy, since low-precision CPU GEMMs are emulated; CUDA multiplies them natively into
    float32). Uniform and shared priors cost O(N D) extra (see the module docstring);
    per-row priors are read once, chunk by chunk. Extra memory: the gradients (N x D,
    V x D) and a (rows, V) logits buffer, rows <= max(N/16, 64) (262 at V = 32000 on CPU),
    plus one more of the same size for per-row priors that need a gather or a cast.

    Inside a ``torch.autocast`` region the inputs are first cast to its dtype, as
    ``F.linear`` would cast them (so float32 parameters meet bfloat16 hidden states), and
    the loss then runs as for inputs of that dtype. Differentiable once (no double backward).
    """
    check_reduction(reduction)
    h, weight, bias, y = flatten_linear_inputs(hidden, weight, bias, targets, ignore_index)
    prior, prior_index = check_soft_target(
        epsilon, prior, prior_index, targets.shape, weight.shape[0]
    )
    with explained_indices(y, weight.shape[0], ignore_index, prior, prior_index):
        loss = fused_linear_soft_target_cross_entropy(
            h, weight, bias, y, epsilon, prior, prior_index, ignore_index, reduction
        )
    return loss.view(targets.shape) if reduction == "none" else loss


def flatten_linear_inputs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Cast as ``F.linear`` would under autocast, check shapes, dtypes and devices (no
    value is read), and flatten: (N, D) hidden, (V, D) weight, (V,) bias or None, (N,)
    int64 targets. With :data:`~adaptls.losses.soft_target.DEBUG_CHECKS`, also checks
    the target values (a host sync)."""
    hidden, weight, bias = _autocast(hidden, weight, bias)
    _check_linear(hidden, weight, bias, targets)
    v, d = weight.shape
    y = targets.reshape(-1).long()
    if soft_target.DEBUG_CHECKS:
        explain_bad_indices(y, v, ignore_index)
    return hidden.reshape(-1, d), weight, bias, y


@contextlib.contextmanager
def explained_indices(
    y: Tensor,
    v: int,
    ignore_index: int,
    prior: Tensor | None = None,
    prior_index: Tensor | None = None,
) -> Iterator[None]:
    """Index values are not checked up front (a host sync): one out of range fails where
    it is used (on CPU an IndexError or RuntimeError; on CUDA a device-side assertion).
    Turn that failure into a ValueError naming the value and what is allowed."""
    if torch.compiler.is_compiling():
        yield
        return
    try:
        yield
    except (RuntimeError, IndexError) as err:
        explain_bad_indices(y, v, ignore_index, prior, prior_index, cause=err)
        raise


def _autocast(hidden, weight, bias):
    """Inside an autocast region, cast as F.linear would: to the region's dtype."""
    if not torch.is_tensor(hidden) or not torch.is_autocast_enabled(hidden.device.type):
        return hidden, weight, bias
    dtype = torch.get_autocast_dtype(hidden.device.type)

    def cast(t):
        eligible = torch.is_tensor(t) and t.is_floating_point() and t.dtype != torch.float64
        return t.to(dtype) if eligible else t

    return cast(hidden), cast(weight), cast(bias)


def _check_linear(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> None:
    for name, t in (("hidden", hidden), ("weight", weight), ("bias", bias)):
        if t is None and name == "bias":
            continue
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got "
                f"{getattr(t, 'dtype', type(t).__name__)}"
            )
    check_target_dtype(targets)
    if weight.dim() != 2 or weight.shape[0] < 1:
        raise ValueError(f"weight must be shaped (V, D) with V >= 1, got {tuple(weight.shape)}")
    v, d = weight.shape
    if hidden.dim() < 1 or hidden.shape[-1] != d or hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"hidden must be shaped (..., {d}) and targets (...): got hidden "
            f"{tuple(hidden.shape)} and targets {tuple(targets.shape)}"
        )
    if bias is not None and bias.shape != (v,):
        raise ValueError(f"bias must be shaped ({v},), got {tuple(bias.shape)}")
    dtypes = {hidden.dtype, weight.dtype} | ({bias.dtype} if bias is not None else set())
    if len(dtypes) > 1:
        raise TypeError(
            f"hidden, weight and bias must share one dtype (as F.linear requires), got "
            f"{', '.join(sorted(str(t) for t in dtypes))}"
        )
    devices = {hidden.device, weight.device, targets.device}
    if bias is not None:
        devices.add(bias.device)
    if len(devices) > 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
