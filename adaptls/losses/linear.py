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

from torch import Tensor

from adaptls.losses._fused_linear import fused_linear_soft_target_cross_entropy
from adaptls.losses.checks import (
    check_reduction,
    check_soft_target,
    explained_indices,
    flatten_linear_inputs,
)

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
