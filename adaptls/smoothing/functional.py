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
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dense_soft_targets", "soft_target_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")
# Elements per chunk: bounds the float32 temporaries of one chunk (4 MiB) while keeping
# the per-chunk Python overhead negligible next to the arithmetic.
_CHUNK_ELEMENTS = 1 << 20


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
            float64).
        targets: (...) integer class indices in ``[0, K)`` or ``ignore_index``.
        epsilon: a float in [0, 1], a 0-d tensor, or a tensor shaped like ``targets``
            (one value per row).
        prior: ``None`` for uniform 1/K; a (K,) distribution shared by all rows; an (N, K)
            per-row distribution (N = rows after flattening the leading dims); or, with
            ``prior_index``, an (M, K) table of distributions.
        prior_index: optional (N,) integer tensor; row i then uses ``prior[prior_index[i]]``.
            The rows are gathered chunk by chunk, so e.g. a K x K class matrix indexed by
            the targets never becomes an N x K tensor.
        ignore_index: rows with this target contribute nothing (no loss, zero gradient).
        reduction: ``"mean"`` over the counted rows, ``"sum"``, or ``"none"`` (shaped like
            ``targets``, 0 on ignored rows). With every row ignored, ``"mean"`` is 0 with a
            zero gradient, never NaN.

    ``epsilon`` and ``prior`` are *targets*: no gradient flows to them.

    Memory: an autograd Function that saves only the logits and one logsumexp per row. It
    never builds the N x K soft target or log-softmax; the backward writes
    ``softmax - t`` into one gradient buffer, chunked over rows so temporaries stay bounded.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor, got {getattr(logits, 'dtype', type(logits))}"
        )
    if not torch.is_tensor(targets) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(
            f"targets must be an integer tensor, got {getattr(targets, 'dtype', type(targets))}"
        )
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be (..., K) with targets (...): got logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    num_classes = logits.shape[-1]
    y = targets.reshape(-1).long()
    bad = ((y < 0) | (y >= num_classes)) & (y != ignore_index)
    if bad.any():
        raise ValueError(
            f"target {y[bad][0].item()} is out of range: allowed are 0..{num_classes - 1} "
            f"or ignore_index={ignore_index}"
        )
    _check_epsilon(epsilon, targets.shape)
    _check_prior(prior, prior_index, y.numel(), num_classes)
    loss = fused_soft_target_cross_entropy(
        logits.reshape(-1, num_classes), y, epsilon, prior, prior_index, ignore_index, reduction
    )
    return loss.view(targets.shape) if reduction == "none" else loss


def fused_soft_target_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    epsilon: float | Tensor,
    prior: Tensor | None,
    prior_index: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """:func:`soft_target_cross_entropy` on (N, K) logits and (N,) targets, without input
    checks (strategies validate their inputs once, before deciding epsilon and prior)."""
    n = targets.numel()
    eps = _as_row_epsilon(epsilon, n, _compute_dtype(logits.dtype), logits.device)
    rows = _SoftTargetCrossEntropy.apply(logits, targets, eps, prior, prior_index, ignore_index)
    if reduction == "none":
        return rows
    total = rows.sum()
    if reduction == "sum":
        return total
    counted = (targets != ignore_index).sum().clamp_(min=1)
    return total / counted


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
    """The dense (N, K) soft target t for (N,) targets; all-zero rows where ignored.

    The reference the fused loss is tested against, and what strategies return from
    ``soft_targets`` for analysis. Materialises N x K: not for training.
    """
    y = targets.reshape(-1).long()
    mask = y != ignore_index
    n = y.numel()
    eps = torch.as_tensor(epsilon, dtype=dtype, device=y.device).reshape(-1)
    eps = eps.expand(n) if eps.numel() == 1 else eps
    if prior is None:
        u = torch.full((n, num_classes), 1.0 / num_classes, dtype=dtype, device=y.device)
    elif prior_index is not None:
        u = prior.to(dtype)[prior_index.reshape(-1).long()]
    else:
        u = prior.to(dtype).expand(n, num_classes)
    t = eps[:, None] * u
    t[torch.arange(n, device=y.device)[mask], y[mask]] += 1.0 - eps[mask]
    t[~mask] = 0.0
    return t


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rows_per_chunk(num_classes: int) -> int:
    return max(1, _CHUNK_ELEMENTS // num_classes)


def _as_row_epsilon(
    epsilon: float | Tensor, n: int, dtype: torch.dtype, device: torch.device
) -> float | Tensor:
    """A python float, or an (N,) tensor (a 0-d tensor becomes an expanded view: no copy)."""
    if not torch.is_tensor(epsilon):
        return float(epsilon)
    eps = epsilon.detach().to(dtype=dtype, device=device)
    return eps.expand(n) if eps.dim() == 0 else eps.reshape(n)


def _check_epsilon(epsilon: float | Tensor, target_shape: torch.Size) -> None:
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


def _check_prior(prior: Tensor | None, prior_index: Tensor | None, n: int, k: int) -> None:
    if prior is None:
        if prior_index is not None:
            raise ValueError("prior_index given without a prior table")
        return
    if not torch.is_tensor(prior) or not prior.is_floating_point():
        raise TypeError(f"prior must be a floating-point tensor, got {type(prior).__name__}")
    if prior_index is not None:
        if prior.dim() != 2 or prior.shape[1] != k:
            raise ValueError(f"with prior_index, prior must be (M, {k}), got {tuple(prior.shape)}")
        if prior_index.numel() != n or prior_index.is_floating_point():
            raise ValueError(
                f"prior_index must hold {n} integer row indices, got {prior_index.dtype} "
                f"of shape {tuple(prior_index.shape)}"
            )
        return
    if prior.shape not in ((k,), (n, k)):
        raise ValueError(
            f"prior must be None, ({k},) or ({n}, {k}) for {n} rows of {k} classes, "
            f"got {tuple(prior.shape)}"
        )


class _SoftTargetCrossEntropy(torch.autograd.Function):
    """Per-row loss; saves the logits and one logsumexp per row, nothing N x K."""

    @staticmethod
    def forward(ctx, logits, targets, eps, prior, prior_index, ignore_index):
        n, k = logits.shape
        cdt = _compute_dtype(logits.dtype)
        lse = torch.empty(n, dtype=cdt, device=logits.device)
        loss = torch.empty(n, dtype=cdt, device=logits.device)
        step = _rows_per_chunk(k)
        u = _shared_or_rows(prior, prior_index, min(step, n), cdt)
        for s in range(0, n, step):
            e = min(s + step, n)
            x = logits[s:e].to(cdt)
            y = targets[s:e]
            keep = y != ignore_index
            # One fused log_softmax per chunk is several times faster than logsumexp on
            # CPU; lse is read back at the arg-max, where log p is near 0 and exact.
            logp = torch.log_softmax(x, dim=1)
            x_max, arg = x.max(dim=1, keepdim=True)
            lse[s:e] = (x_max - logp.gather(1, arg)).squeeze(1)
            logp_y = logp.gather(1, torch.where(keep, y, 0).unsqueeze(1)).squeeze(1)
            u_logp = _prior_dot(logp, u, s, e)
            eps_c = eps if isinstance(eps, float) else eps[s:e]
            row = -((1.0 - eps_c) * logp_y + eps_c * u_logp)
            loss[s:e] = torch.where(keep, row, 0.0)
        ctx.save_for_backward(logits, targets, lse, *_tensors(eps, prior, prior_index))
        ctx.eps_float = eps if isinstance(eps, float) else None
        ctx.has_prior = prior is not None
        ctx.has_index = prior_index is not None
        ctx.ignore_index = ignore_index
        return loss

    @staticmethod
    def backward(ctx, grad_rows):
        logits, targets, lse, *rest = ctx.saved_tensors
        eps = ctx.eps_float if ctx.eps_float is not None else rest.pop(0)
        prior = rest.pop(0) if ctx.has_prior else None
        prior_index = rest.pop(0) if ctx.has_index else None
        n, k = logits.shape
        cdt = lse.dtype
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        in_place = logits.dtype == cdt
        step = _rows_per_chunk(k)
        u = _shared_or_rows(prior, prior_index, min(step, n), cdt)
        for s in range(0, n, step):
            e = min(s + step, n)
            y = targets[s:e]
            keep = y != ctx.ignore_index
            w = torch.where(keep, grad_rows[s:e].to(cdt), 0.0)
            # softmax, written straight into the gradient buffer when dtypes allow
            if in_place:
                buf = grad[s:e]
                torch.sub(logits[s:e], lse[s:e, None], out=buf)
            else:
                buf = logits[s:e].to(cdt) - lse[s:e, None]
            buf.exp_()
            eps_c = eps if isinstance(eps, float) else eps[s:e]
            _sub_eps_prior(buf, eps_c, u, s, e, k)
            hard = (eps_c - 1.0) if isinstance(eps_c, float) else (eps_c - 1.0).unsqueeze(1)
            hard = torch.as_tensor(hard, dtype=cdt, device=buf.device).expand(e - s, 1)
            buf.scatter_add_(1, torch.where(keep, y, 0).unsqueeze(1), hard)
            buf.mul_(w.unsqueeze(1))
            if not in_place:
                grad[s:e] = buf
        return grad, None, None, None, None, None


def _tensors(eps, prior, prior_index) -> list[Tensor]:
    return [t for t in (eps, prior, prior_index) if torch.is_tensor(t)]


class _PriorRows:
    """Rows u_i of a per-row prior, chunk by chunk, gathered into one reused buffer (a
    fresh buffer per chunk would pay for new pages on every chunk)."""

    def __init__(self, prior: Tensor, prior_index: Tensor | None, rows: int, dtype) -> None:
        self.prior, self.index, self.dtype = prior, prior_index, dtype
        self.buffer = None
        if prior_index is not None and prior.dtype == dtype:
            self.buffer = torch.empty(rows, prior.shape[1], dtype=dtype, device=prior.device)

    def __call__(self, s: int, e: int) -> Tensor:
        if self.index is None:
            return self.prior[s:e].to(self.dtype)
        if self.buffer is None:
            return self.prior[self.index[s:e]].to(self.dtype)
        return torch.index_select(self.prior, 0, self.index[s:e], out=self.buffer[: e - s])


def _shared_or_rows(prior, prior_index, rows: int, dtype):
    """None (uniform), a (K,) shared prior, or a _PriorRows reader."""
    if prior is None:
        return None
    if prior.dim() == 1 and prior_index is None:
        return prior.to(dtype)
    return _PriorRows(prior, prior_index, rows, dtype)


def _prior_dot(x: Tensor, u, s: int, e: int) -> Tensor:
    """<u_i, x_i> for the chunk's rows (x = log-probabilities here)."""
    if u is None:
        return x.mean(dim=1)
    if torch.is_tensor(u):
        return x @ u
    return torch.bmm(x.unsqueeze(1), u(s, e).unsqueeze(2)).view(-1)


def _sub_eps_prior(buf: Tensor, eps_c, u, s: int, e: int, k: int) -> None:
    """buf -= eps_i * u_i, in place."""
    scalar = isinstance(eps_c, float)
    prior = u
    if prior is None:
        buf.sub_(eps_c / k if scalar else (eps_c / k).unsqueeze(1))
    elif torch.is_tensor(prior):
        if scalar:
            buf.sub_(prior, alpha=eps_c)
        else:
            buf.addr_(eps_c, prior, alpha=-1.0)
    else:
        u = prior(s, e)
        if scalar:
            buf.sub_(u, alpha=eps_c)
        else:
            buf.addcmul_(u, eps_c.unsqueeze(1), value=-1.0)
