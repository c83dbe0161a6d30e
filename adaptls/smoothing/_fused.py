r"""The fused kernel behind :func:`~adaptls.smoothing.soft_target_cross_entropy`.

Row by row, with :math:`z_i = x_i - \max_k x_{ik}` (so nothing overflows),

.. math::
    \ell_i = \log \textstyle\sum_k e^{z_{ik}} - z_{iy_i}
             + \varepsilon_i\,(z_{iy_i} - \langle u_i, z_i \rangle),
    \qquad
    \frac{\partial \ell_i}{\partial x_i} = \mathrm{softmax}(x_i) - t_i ,

the same loss as :math:`-\langle t_i, \log\mathrm{softmax}(x_i) \rangle` and as accurate as
a log-softmax. Work is chunked over rows; a chunk's temporaries (about 1 MiB per thread)
stay in cache while every pass over it runs, so only the first read of the logits, the
gather of per-row priors and the write of the gradient go to memory.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Elements per chunk of rows (1 MiB of float32) and per CPU thread: big enough that the
# ~20 small per-chunk operations cost little next to the arithmetic, small enough that a
# thread's share of the chunk, of its work buffer and of its gradient rows stays in a
# core's L2 cache (measured on CPU with one thread: 256 Ki elements beat 64 Ki and 128 Ki
# and matched 512 Ki). More threads get proportionally bigger chunks: every operation ends with a
# barrier across the threads, and on a busy machine those waits, not the arithmetic,
# dominate. A chunk is also kept to <= 1/16 of the logits (down to 16 Ki elements), so
# temporaries stay a small fraction of the logits' size.
_CHUNK_ELEMENTS = 1 << 18
_MIN_CHUNK_ELEMENTS = 1 << 14


def fused_soft_target_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    epsilon: float | Tensor,
    prior: Tensor | None,
    prior_index: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """The loss of (N, K) logits against (N,) int64 targets, without input checks.

    ``epsilon``: a float, a 0-d or an (N,) tensor; ``prior``: None, (K,), (N, K) or, with
    an (N,) ``prior_index``, an (M, K) table. Callers check these first
    (:func:`~adaptls.smoothing.functional.check_inputs` and friends); strategies check
    their inputs once and call this directly.
    """
    n = targets.numel()
    eps = _as_row_epsilon(epsilon, n, _compute_dtype(logits.dtype), logits.device)
    if isinstance(eps, float) and eps == 0.0:
        prior = prior_index = None  # the prior has no weight: skip reading it
    if prior is not None:
        prior = prior.detach()
    needs_grad = torch.is_grad_enabled() and logits.requires_grad
    return _SoftTargetCrossEntropy.apply(
        logits, targets, eps, prior, prior_index, ignore_index, reduction, needs_grad
    )


class _SoftTargetCrossEntropy(torch.autograd.Function):
    """The reduced loss; nothing N x K is kept but the gradient itself.

    float32/float64 logits that need a gradient: the forward computes the gradient of the
    reduced loss too, while each chunk is in cache. The logits are read once and a
    per-row prior is gathered once (not again in a backward); the backward scales that
    buffer by the incoming gradient in place (not at all for ``loss.backward()``) and
    hands it out. float16/bfloat16 logits: the forward computes the loss only and the
    backward recomputes the gradient in float32, applying the incoming gradient (e.g. a
    loss scale) before rounding to the logits' dtype, so small gradients do not underflow.
    A second backward through the same graph (``retain_graph=True``) recomputes too.
    """

    @staticmethod
    def forward(ctx, logits, targets, eps, prior, prior_index, ignore_index, reduction, needs_grad):
        n = targets.numel()
        cdt = _compute_dtype(logits.dtype)
        counted = int((targets != ignore_index).sum())
        scale = 1.0 / max(counted, 1) if reduction == "mean" else 1.0
        eager = needs_grad and logits.dtype == cdt
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format) if eager else None
        kernel = _Kernel(logits, targets, eps, prior, prior_index, ignore_index, counted == n)
        chunks = kernel.chunks()
        if reduction == "none":
            out = torch.empty(n, dtype=cdt, device=logits.device)
        else:
            out = torch.zeros(len(chunks), dtype=cdt, device=logits.device)
        for i, (s, e) in enumerate(chunks):
            if reduction == "none":
                out[s:e] = kernel(s, e, "rows", scale if eager else None, grad)
            else:
                out[i] = kernel(s, e, "sum", scale if eager else None, grad)
        ctx.save_for_backward(logits, targets, *_tensors(eps, prior, prior_index))
        # Not a saved tensor: the backward hands it out and lets go of it, so autograd can
        # take it as the logits' .grad without a copy.
        ctx.grad = grad
        ctx.eps_float = eps if isinstance(eps, float) else None
        ctx.has_prior, ctx.has_index = prior is not None, prior_index is not None
        ctx.ignore_index, ctx.scale, ctx.all_counted = ignore_index, scale, counted == n
        return out if reduction == "none" else out.sum() * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        nones = (None,) * 7
        if ctx.grad is not None:
            grad, ctx.grad = ctx.grad, None  # handed out once; a further backward recomputes
            if not _all_ones(grad_output):
                grad.mul_(grad_output.reshape(-1, 1).to(grad.dtype))
            return grad, *nones
        logits, targets, *rest = ctx.saved_tensors
        eps = ctx.eps_float if ctx.eps_float is not None else rest.pop(0)
        prior = rest.pop(0) if ctx.has_prior else None
        prior_index = rest.pop(0) if ctx.has_index else None
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        kernel = _Kernel(
            logits, targets, eps, prior, prior_index, ctx.ignore_index, ctx.all_counted
        )
        scaling = None if _all_ones(grad_output) else grad_output.reshape(-1, 1)
        for s, e in kernel.chunks():
            rows = scaling if scaling is None or scaling.numel() == 1 else scaling[s:e]
            kernel(s, e, None, ctx.scale, grad, rows)
        return grad, *nones


class _Kernel:
    """The work on one chunk of rows: their loss and, on request, their gradient rows."""

    def __init__(
        self, logits, targets, eps, prior, prior_index, ignore_index, all_counted: bool
    ) -> None:
        self.logits, self.targets, self.eps = logits, targets, eps
        self.ignore_index = ignore_index
        # one epsilon for every row: per-row priors need no scaling pass (see __call__)
        self.eps_shared = eps if isinstance(eps, float) and all_counted else None
        self.cdt = _compute_dtype(logits.dtype)
        self.smoothed = not (isinstance(eps, float) and eps == 0.0)
        self.prior = _Prior(prior, prior_index, logits.shape[1], self.cdt)
        self.work: Tensor | None = None

    def chunks(self) -> list[tuple[int, int]]:
        n, k = self.logits.shape
        threads = torch.get_num_threads() if self.logits.device.type == "cpu" else 1
        elements = min(_CHUNK_ELEMENTS * threads, max(_MIN_CHUNK_ELEMENTS, n * k // 16))
        step = max(1, elements // max(k, 1))
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    def __call__(
        self,
        s: int,
        e: int,
        loss: str | None,
        scale: float | None,
        grad: Tensor | None,
        grad_output: Tensor | None = None,
    ) -> Tensor | None:
        """The loss of rows s..e (0 where ignored): per row (``loss="rows"``), summed
        (``"sum"``) or not at all (None). With ``scale``, also their gradient rows
        scale * (softmax - t), times ``grad_output`` (one value, or one per row) if given:
        the same arithmetic as scaling the forward's gradient in the backward, so a
        recomputed gradient equals it bit for bit."""
        x = self.logits[s:e]
        keep = self.targets[s:e] != self.ignore_index
        y = torch.where(keep, self.targets[s:e], 0).unsqueeze(1)
        counted = keep.to(self.cdt)
        eps = counted * self.eps if isinstance(self.eps, float) else counted * self.eps[s:e]
        # the max in the logits' dtype is exact; the subtraction promotes to cdt
        self.work = z = _buffer(self.work, e - s, x.shape[1], self.cdt, x.device)
        torch.sub(x, x.amax(dim=1, keepdim=True).to(self.cdt), out=z)
        z_y = z.gather(1, y).squeeze(1)
        # The gradient goes straight into ``grad`` when it has the compute dtype, else it
        # is built in the work buffer and cast once.
        g = None if scale is None or grad.dtype != self.cdt else grad[s:e]
        # Per-row priors are read once, as rows v_i with f * v_i = eps_i * u_i, for the
        # loss and the gradient: u_i itself, gathered straight into the gradient rows (which
        # the gradient then overwrites), and f = eps when every row shares one epsilon;
        # else eps_i * u_i in a buffer and f = 1. A summed loss needs only
        # sum_i eps_i <u_i, z_i>: one flat dot product.
        scaled, f = None, 1.0
        if self.smoothed and self.prior.per_row:
            if self.eps_shared is None:
                scaled = self.prior.rows(s, e, eps)
            else:
                scaled, f = self.prior.rows(s, e, out=g), self.eps_shared
        prior_sum = 0.0
        row = z_y * (eps - 1.0)
        if loss is not None and self.smoothed:
            if scaled is None:
                row = row.sub_(eps * self.prior.dot(z))
            elif loss == "sum":
                prior_sum = torch.dot(scaled.view(-1), z.view(-1)) * f
            else:
                row = row.sub_(torch.linalg.vecdot(scaled, z).mul_(f))
        total = z.exp_().sum(dim=1)
        if scale is not None:
            g = z if g is None else g
            weight = (counted * scale / total).unsqueeze(1)
            if scaled is not None:
                torch.sub(z.mul_(weight), scaled, alpha=scale * f, out=g)
            else:
                torch.mul(z, weight, out=g)
                if self.smoothed:
                    self.prior.subtract_(g, eps * scale)
            g.scatter_add_(1, y, ((eps - counted) * scale).unsqueeze(1))
            if grad_output is not None:
                g.mul_(grad_output.to(self.cdt))
            if g is z:
                grad[s:e] = z
        if loss is None:
            return None
        row = torch.where(keep, row.add_(total.log()), 0.0)
        return row if loss == "rows" else row.sum() - prior_sum


class _Prior:
    """The prior: uniform (``None``), one shared (K,) prior, (N, K) rows, or rows of an
    (M, K) table picked by an index. Per-row priors of a chunk are read once, gathered (or
    cast) into one reused buffer."""

    def __init__(self, prior: Tensor | None, index: Tensor | None, k: int, dtype) -> None:
        self.k, self.dtype, self.index = k, dtype, index
        self.prior = prior.to(dtype) if prior is not None and prior.dim() == 1 else prior
        self.per_row = prior is not None and prior.dim() == 2
        self.buffer: Tensor | None = None

    def rows(self, s: int, e: int, c: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """u_i (times c_i, if given) for rows s..e of a per-row prior, in ``out`` or the
        buffer (or the caller's rows themselves, when they need neither a cast nor a
        scale)."""
        if self.index is None:
            u = self.prior[s:e]
            if c is None and u.dtype == self.dtype:
                return u
            out = self._buffer(e - s)
            return torch.mul(u, c.unsqueeze(1), out=out) if c is not None else out.copy_(u)
        u = self._buffer(e - s) if out is None else out
        if self.prior.dtype == self.dtype:
            torch.index_select(self.prior, 0, self.index[s:e], out=u)
        else:
            u.copy_(self.prior[self.index[s:e]])
        return u if c is None else u.mul_(c.unsqueeze(1))

    def _buffer(self, rows: int) -> Tensor:
        self.buffer = _buffer(self.buffer, rows, self.k, self.dtype, self.prior.device)
        return self.buffer

    def dot(self, z: Tensor) -> Tensor:
        """<u, z_i> for a uniform or shared prior u."""
        return z.mean(dim=1) if self.prior is None else z @ self.prior

    def subtract_(self, g: Tensor, c: Tensor) -> None:
        """g -= c_i * u, in place, for a uniform or shared prior u and per-row weights c."""
        if self.prior is None:
            g.sub_((c / self.k).unsqueeze(1))
        else:
            g.addr_(c, self.prior, alpha=-1.0)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_row_epsilon(
    epsilon: float | Tensor, n: int, dtype: torch.dtype, device: torch.device
) -> float | Tensor:
    """A python float, or an (N,) tensor (a 0-d tensor becomes an expanded view: no copy)."""
    if not torch.is_tensor(epsilon):
        return float(epsilon)
    eps = epsilon.detach().to(dtype=dtype, device=device)
    return eps.expand(n) if eps.dim() == 0 else eps.reshape(n)


def _all_ones(grad_output: Tensor) -> bool:
    """Whether the incoming gradient is 1 (``loss.backward()``): no scaling pass needed."""
    if grad_output.dim() == 0:
        return grad_output.item() == 1.0
    return bool((grad_output == 1.0).all())


def _buffer(buffer: Tensor | None, rows: int, k: int, dtype, device) -> Tensor:
    """A (rows, k) view of one reused work buffer (fresh pages on every chunk cost time)."""
    if buffer is None or buffer.shape[0] < rows:
        buffer = torch.empty(rows, k, dtype=dtype, device=device)
    return buffer[:rows]


def _tensors(*values) -> list[Tensor]:
    return [t for t in values if torch.is_tensor(t)]
