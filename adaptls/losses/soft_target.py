r"""The fused soft-target cross-entropy that every strategy trains with.

For row i with logits :math:`x_i \in \mathbb{R}^K`, target :math:`y_i`, smoothing amount
:math:`\varepsilon_i` and prior :math:`u_i` (a distribution over the K classes), the soft
target is

.. math:: t_i = (1 - \varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i\, u_i

and, because :math:`\sum_k t_{ik} = 1`,

.. math::
    \ell_i = -\sum_k t_{ik} \log \mathrm{softmax}(x_i)_k
           = \mathrm{logsumexp}(x_i) - (1 - \varepsilon_i)\, x_{i y_i}
             - \varepsilon_i \langle u_i, x_i \rangle,
    \qquad
    \frac{\partial \ell_i}{\partial x_i} = \mathrm{softmax}(x_i) - t_i .

Convention: with ``prior=None`` the prior is uniform 1/K over *all* classes, the true one
included (PyTorch's ``label_smoothing=e`` and timm's convention), not e/(K-1) on the others.

No host syncs: the loss and its checks read shapes and dtypes only, never tensor values,
so a training step on a GPU never waits for the device here. Index values are checked
where they are used: on CPU a target outside ``[0, K)`` (and not ``ignore_index``) or a
``prior_index`` outside the table raises a ValueError naming it; on CUDA it trips a
device-side assertion, as ``F.cross_entropy`` does. Set :data:`adaptls.losses.checks.DEBUG_CHECKS` (or the
environment variable ``ADAPTLS_DEBUG_CHECKS=1`` before import) to check them before the
loss runs, with the same clear ValueError on every device, at the cost of a device sync
per call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adaptls.losses._fused import fused_soft_target_cross_entropy
from adaptls.losses.checks import (
    check_inputs,
    check_reduction,
    check_soft_target,
    explain_bad_indices,
)

__all__ = ["dense_soft_targets", "soft_target_cross_entropy"]


def soft_target_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    epsilon: float | Tensor,
    prior: Tensor | None = None,
    *,
    prior_index: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy against :math:`t_i = (1-\varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i u_i`.

    Args:
        logits: (..., K) floating point, any dtype; accumulated in float32 (float64 stays
            float64). The loss is returned in that accumulation dtype, the gradient in the
            logits' dtype.
        targets: (...) integer class indices in ``[0, K)`` or ``ignore_index``.
        epsilon: a float in [0, 1], a 0-d tensor, or a tensor shaped like ``targets``
            (one value per row).
        prior: ``None`` for uniform 1/K; a (K,) distribution shared by all rows; an (N, K)
            per-row distribution (N = rows after flattening the leading dims; a tensor
            shaped like ``logits`` is accepted too); or, with ``prior_index``, an (M, K)
            table of distributions.
        prior_index: optional integer tensor shaped like ``targets`` (or (N,)); row i then
            uses ``prior[prior_index[i]]``. The rows are gathered chunk by chunk, so e.g. a
            K x K class matrix indexed by the targets never becomes an N x K tensor.
        ignore_index: rows with this target contribute nothing (no loss, zero gradient).
        reduction: ``"mean"`` over the counted rows, ``"sum"``, or ``"none"`` (shaped like
            ``targets``, 0 on ignored rows). With every row ignored, ``"mean"`` is 0 with a
            zero gradient, never NaN.

    ``epsilon`` and ``prior`` are *targets*: no gradient flows to them (they are detached).
    Their tensor values are not checked (that would cost a device sync): priors must be
    distributions (rows summing to 1, which the loss formula above relies on); t is a
    distribution for epsilon in [0, 1]. Index values: see :data:`~adaptls.losses.checks.DEBUG_CHECKS`.

    Memory: an autograd Function that never builds the N x K soft target, log-softmax or
    softmax; the only N x K tensor it allocates is the gradient itself (``softmax - t``,
    in one pass over the logits, or chunk by chunk with temporaries of one chunk). For
    float32/float64 logits that need a gradient it is computed in the forward and the
    backward only scales it; other dtypes recompute it in the backward from the saved
    logits. That Function is differentiable once (no double backward). Tiny problems (up
    to 32 Ki logits on CPU) run as plain differentiable operations on a dense target
    instead (cheaper per call; about 3 x the logits' memory, at most ~400 KiB). Under
    ``torch.compile`` it is a Function written for the compiler to fuse, with no graph
    break. Details and measurements: :mod:`adaptls.losses._fused`.
    """
    check_reduction(reduction)
    x, y = check_inputs(logits, targets, ignore_index)
    prior, prior_index = check_soft_target(epsilon, prior, prior_index, targets.shape, x.shape[1])
    loss = fused_soft_target_cross_entropy(
        x, y, epsilon, prior, prior_index, ignore_index, reduction
    )
    return loss.view(targets.shape) if reduction == "none" else loss


@torch.no_grad()
def dense_soft_targets(
    targets: Tensor,
    num_classes: int,
    epsilon: float | Tensor,
    prior: Tensor | None = None,
    *,
    prior_index: Tensor | None = None,
    ignore_index: int = -100,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The dense (N, K) soft target t for targets (...) flattened to N rows; all-zero rows
    where ignored. ``epsilon``, ``prior`` and ``prior_index`` as in
    :func:`soft_target_cross_entropy`.

    The reference the fused loss is tested against, and what strategies return from
    ``soft_targets`` for analysis. Materialises N x K: not for training. Checks the index
    values (a host sync; it is not on the training path).
    """
    y = targets.reshape(-1).long()
    explain_bad_indices(y, num_classes, ignore_index, prior, prior_index)
    mask = y != ignore_index
    n = y.numel()
    eps = torch.as_tensor(epsilon, dtype=dtype, device=y.device).reshape(-1)
    eps = eps.expand(n) if eps.numel() == 1 else eps
    if prior is None:
        u = torch.full((n, num_classes), 1.0 / num_classes, dtype=dtype, device=y.device)
    elif prior_index is not None:
        u = prior.to(dtype)[prior_index.reshape(-1).long()]
    else:
        u = prior.to(dtype).reshape(-1, num_classes).expand(n, num_classes)
    t = eps[:, None] * u
    t[torch.arange(n, device=y.device)[mask], y[mask]] += 1.0 - eps[mask]
    t[~mask] = 0.0
    return t
