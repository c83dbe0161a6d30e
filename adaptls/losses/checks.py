"""The one place the fused losses check their inputs.

Shapes, dtypes and devices are checked up front and never read a tensor's values, so a
training step on a GPU does not wait for the device here. Index values (targets in
``[0, K)`` or ``ignore_index``, ``prior_index`` inside its table) are checked where they
are used: a bad one fails in the kernel and :func:`explain_bad_indices` turns the failure
into a ValueError naming the value and what is allowed. :data:`DEBUG_CHECKS` checks them
before the loss runs instead, on every device, at the cost of one host sync per call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")

#: Check index values (targets in range, ``prior_index`` in range) before the loss runs,
#: with a clear error on every device, at the cost of one host sync per call. Off by
#: default; ``ADAPTLS_DEBUG_CHECKS=1`` (or true/yes/on) in the environment turns it on at
#: import, and tests or a debugging session can set it directly
#: (``adaptls.losses.checks.DEBUG_CHECKS = True``).
DEBUG_CHECKS: bool = os.environ.get("ADAPTLS_DEBUG_CHECKS", "").strip().lower() in (
    "1",
    "true",
    "yes",
    "on",
)


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


def check_target_dtype(targets: Tensor) -> None:
    """Targets must be an integer tensor of class indices (no value is read)."""
    if not torch.is_tensor(targets) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(
            f"targets must be an integer tensor of class indices, got "
            f"{getattr(targets, 'dtype', type(targets).__name__)}"
        )


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


def flatten_linear_inputs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Cast as ``F.linear`` would under autocast, check shapes, dtypes and devices (no
    value is read), and flatten: (N, D) hidden, (V, D) weight, (V,) bias or None, (N,)
    int64 targets. With :data:`~adaptls.losses.DEBUG_CHECKS`, also checks
    the target values (a host sync)."""
    hidden, weight, bias = _autocast(hidden, weight, bias)
    _check_linear(hidden, weight, bias, targets)
    v, d = weight.shape
    y = targets.reshape(-1).long()
    if DEBUG_CHECKS:
        explain_bad_indices(y, v, ignore_index)
    return hidden.reshape(-1, d), weight, bias, y


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


def explain_bad_indices(
    targets: Tensor,
    k: int,
    ignore_index: int,
    prior: Tensor | None = None,
    prior_index: Tensor | None = None,
    cause: BaseException | None = None,
) -> None:
    """Raise a ValueError naming the first target outside ``[0, K)`` and not
    ``ignore_index``, or the first ``prior_index`` outside the prior table; return if there
    is none. Reads the values (a host sync): for error paths and debug checks only."""
    y = targets.reshape(-1)
    bad = ((y < 0) | (y >= k)) & (y != ignore_index)
    if bad.any():
        raise ValueError(
            f"target {y[bad][0].item()} is out of range: allowed are 0..{k - 1} "
            f"or ignore_index={ignore_index}"
        ) from cause
    if prior is not None and prior_index is not None and prior_index.numel():
        index, m = prior_index.reshape(-1), prior.shape[0]
        bad = (index < 0) | (index >= m)
        if bad.any():
            raise ValueError(
                f"prior_index {index[bad][0].item()} is out of range: allowed are 0..{m - 1}"
            ) from cause
