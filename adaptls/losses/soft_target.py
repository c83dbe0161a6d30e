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
device-side assertion, as ``F.cross_entropy`` does. Set :data:`DEBUG_CHECKS` (or the
environment variable ``ADAPTLS_DEBUG_CHECKS=1`` before import) to check them before the
loss runs, with the same clear ValueError on every device, at the cost of a device sync
per call.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from adaptls.losses._fused import explain_bad_indices, fused_soft_target_cross_entropy

__all__ = ["DEBUG_CHECKS", "dense_soft_targets", "soft_target_cross_entropy"]

REDUCTIONS = ("mean", "sum", "none")

#: Check index values (targets in range, ``prior_index`` in range) before the loss runs,
#: with a clear error on every device, at the cost of one host sync per call. Off by
#: default; ``ADAPTLS_DEBUG_CHECKS=1`` (or true/yes/on) in the environment turns it on at
#: import, and tests or a debugging session can set it directly
#: (``adaptls.losses.soft_target.DEBUG_CHECKS = True``).
DEBUG_CHECKS: bool = os.environ.get("ADAPTLS_DEBUG_CHECKS", "").strip().lower() in (
    "1",
    "true",
    "yes",
    "on",
)


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
    distribution for epsilon in [0, 1]. Index values: see :data:`DEBUG_CHECKS`.

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


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_inputs(logits: Tensor, targets: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Check float logits (..., K) against integer targets (...); returns them flattened to
    (N, K) and (N,) int64. Shapes and dtypes only (no host sync); with :data:`DEBUG_CHECKS`
    also that the targets are in [0, K) or ignore_index."""
    # every call of every training step comes here: the common case first, and no copies
    # or views that are not needed
    if (
        type(logits) is Tensor
        and type(targets) is Tensor
        and logits.dim() == 2
        and targets.dtype == torch.int64
        and targets.dim() == 1
        and logits.shape[0] == targets.shape[0]
        and logits.shape[1] >= 1
        and logits.is_floating_point()
    ):
        if DEBUG_CHECKS:
            _check_target_range(targets, logits.shape[1], ignore_index)
        return logits, targets
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor, got "
            f"{getattr(logits, 'dtype', type(logits).__name__)}"
        )
    check_target_dtype(targets)
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape or logits.shape[-1] < 1:
        raise ValueError(
            f"logits must be shaped (..., K) with K >= 1 and targets (...): got logits "
            f"{tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    k = logits.shape[-1]
    y = targets if targets.dim() == 1 else targets.reshape(-1)
    if y.dtype != torch.int64:
        y = y.long()
    if DEBUG_CHECKS:
        _check_target_range(y, k, ignore_index)
    return (logits if logits.dim() == 2 else logits.reshape(-1, k)), y


def _check_target_range(y: Tensor, k: int, ignore_index: int) -> None:
    """Raise a ValueError for a target outside [0, k) and not ignore_index. Reads the values
    (a host sync): :func:`check_inputs` runs it only under :data:`DEBUG_CHECKS`."""
    explain_bad_indices(y, k, ignore_index)


def check_soft_target(
    epsilon: float | Tensor,
    prior: Tensor | None,
    prior_index: Tensor | None,
    target_shape: torch.Size,
    k: int,
) -> tuple[Tensor | None, Tensor | None]:
    """Check epsilon and prior for targets of ``target_shape`` over k classes; returns the
    prior with per-row priors as (N, K) and prior_index as (N,)."""
    _check_epsilon(epsilon, target_shape)
    return _check_prior(prior, prior_index, target_shape, k)


def _check_epsilon(epsilon: float | Tensor, target_shape: torch.Size) -> None:
    """epsilon must be a number in [0, 1], a floating 0-d tensor, or one value per target."""
    if type(epsilon) is float and 0.0 <= epsilon <= 1.0:
        return
    if torch.is_tensor(epsilon):
        if not epsilon.is_floating_point():
            raise TypeError(f"epsilon must be a floating-point tensor, got {epsilon.dtype}")
        if epsilon.dim() != 0 and epsilon.shape != target_shape:
            raise ValueError(
                f"epsilon must be a scalar or shaped like targets {tuple(target_shape)}, "
                f"got {tuple(epsilon.shape)}"
            )
        return
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise TypeError(f"epsilon must be a float or a tensor, got {epsilon!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")


def _check_prior(
    prior: Tensor | None, prior_index: Tensor | None, target_shape: torch.Size, k: int
) -> tuple[Tensor | None, Tensor | None]:
    n = target_shape.numel()
    if prior is None:
        if prior_index is not None:
            raise ValueError("prior_index given without a prior table")
        return None, None
    if not torch.is_tensor(prior) or not prior.is_floating_point():
        raise TypeError(
            f"prior must be a floating-point tensor, got {getattr(prior, 'dtype', type(prior))}"
        )
    if prior_index is not None:
        if prior.dim() != 2 or prior.shape[1] != k or prior.shape[0] == 0:
            raise ValueError(
                f"with prior_index, prior must be an (M, {k}) table, got {tuple(prior.shape)}"
            )
        if (
            not torch.is_tensor(prior_index)
            or prior_index.is_floating_point()
            or prior_index.is_complex()
            or prior_index.dtype == torch.bool
            or prior_index.numel() != n
        ):
            raise ValueError(
                f"prior_index must be an integer tensor shaped like targets "
                f"{tuple(target_shape)}, got {getattr(prior_index, 'dtype', type(prior_index))} "
                f"of shape {tuple(getattr(prior_index, 'shape', ()))}"
            )
        index = prior_index.reshape(-1)
        if DEBUG_CHECKS:
            explain_bad_indices(index.new_zeros(0), k, 0, prior, index)
        return prior, index
    if prior.shape == (k,):
        return prior, None
    if prior.shape in ((n, k), (*target_shape, k)):
        return prior.reshape(n, k), None
    raise ValueError(
        f"prior must be None, ({k},) or ({n}, {k}) for {n} rows of {k} classes, "
        f"got {tuple(prior.shape)}"
    )


def check_target_dtype(targets: Tensor) -> None:
    """Targets must be an integer tensor of class indices (no value is read)."""
    if not torch.is_tensor(targets) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(
            f"targets must be an integer tensor of class indices, got "
            f"{getattr(targets, 'dtype', type(targets).__name__)}"
        )
