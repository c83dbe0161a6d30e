r"""The chunked autograd Function behind
:func:`~adaptls.smoothing.linear_soft_target_cross_entropy`.

Rows of ``hidden`` are processed in chunks. For a chunk the logits :math:`z = h W^\top + b`
are computed by one matmul into a reused (rows, V) buffer, shifted by their row maximum
:math:`m_i`, exponentiated in place and, when gradients are wanted, turned into
:math:`w_i\,\mathrm{softmax}(z_i)` (:math:`w_i` is the row's weight in the reduced loss:
1/counted for ``"mean"``, 1 for ``"sum"``, the incoming gradient for ``"none"``, 0 on
ignored rows). The hard-label part :math:`-(1-\varepsilon_i) w_i\,\mathrm{onehot}(y_i)` is
one scatter of N values. With :math:`G` the resulting chunk gradient w.r.t. the logits,

.. math::
    \partial h = G W, \qquad \partial W \mathrel{+}= G^\top h, \qquad
    \partial b \mathrel{+}= \textstyle\sum_i G_i .

The smoothing part :math:`-\varepsilon_i w_i u` of a *shared* prior (uniform or one (V,)
prior) is linear in the logits and never touches the (rows, V) buffer:
:math:`\langle u, z_i\rangle = h_i \cdot (W^\top u) + b\cdot u`, and its gradient is
:math:`-\varepsilon_i w_i W^\top u` for :math:`h_i`,
:math:`-u \otimes \sum_i \varepsilon_i w_i h_i` for :math:`W` and
:math:`-u \sum_i \varepsilon_i w_i` for :math:`b`: O(N D + V D) work in all. Per-row priors
(an (N, V) tensor or rows of a table) are read chunk by chunk, against the chunk's logits.

An epsilon decided from the logits themselves (confidence-adaptive smoothing) is a
:class:`RowEpsilon`: a function of per-row statistics the chunk pass has in hand anyway
(:class:`RowStatistics`: the log-sum-exp and the target logit relative to the row
maximum, and on request the entropy), called on each chunk after its softmax denominator
and before its loss and gradient, so the epsilon costs no second pass over the logits.
The epsilons it decided are kept ((N,), :attr:`RowEpsilon.values`) and reused as a plain
per-row epsilon when the backward recomputes the chunks.

Nothing N x V is ever allocated; besides the gradients themselves (N x D and V x D, kept in
the accumulation dtype until the backward hands them out) the memory is one (rows, V)
logits buffer, plus one more for per-row priors that need a cast or a gather.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from adaptls.losses._exp import exp_
from adaptls.losses._fused import _as_row_epsilon, _compute_dtype

# Rows per chunk. A chunk costs three matmuls (logits, and the hidden and weight
# gradients), each of which streams the whole V x D weight (32 MB in fp32 at V = 32000,
# D = 256) and the weight-gradient accumulator through memory once per chunk, so chunks
# must not be thin: with c rows a chunk does ~6 c V D flops per ~16 V D bytes of weight
# traffic, and the GEMMs only run at full speed from c ~ 64-128 rows up. Against that, the
# (c, V) logits buffer is the loss's only large temporary: it must stay a small fraction
# of the N x V logits it replaces.
#
# CPU: the elementwise passes over the buffer (shift, exp, scale) do not stay in cache at
# vocabulary scale however the chunk is sized (one row of V = 32000 fp32 logits is 125 KiB,
# and the 31 MiB weight that every GEMM streams evicts the chunk from a 16 MiB L3 anyway),
# so cache residency does not set the size here as it does in the unfused kernel (_fused);
# GEMM efficiency and memory do. Timed by rows per chunk (docs/performance.md, "Earlier
# records"), the time falls steeply up to ~128 rows and then flattens: past ~256 rows the
# gain is a few percent for twice the buffer, so 2^23 elements (32 MiB
# fp32: 262 rows at V = 32000) per chunk, at least 64 rows.
# CUDA (not measured: no GPU in reach when this was written): a chunk launches ~10
# kernels of a few microseconds' overhead each, against GEMMs that an H100/H200 finishes in
# tens of microseconds at CPU-sized chunks (262 x 32000 x 256 is ~4 GFLOP), so chunks 4x
# bigger, 2^25 elements (128 MiB fp32: 1048 rows at V = 32000), again at least 64 rows.
# Both: a chunk holds at most ceil(N / 16) rows (but never fewer than the minimum), so the
# buffer stays below 1/16 of the logits' size at any N, as in the unfused kernel.
_CPU_CHUNK_ELEMENTS = 1 << 23
_CUDA_CHUNK_ELEMENTS = 1 << 25
_MIN_CHUNK_ROWS = 64
# Tests set this to force a given number of rows per chunk (None: the rule above).
_CHUNK_ROWS: int | None = None


def chunk_rows(n: int, v: int, device: torch.device) -> int:
    """Rows per chunk for n rows over v classes on ``device`` (see the comment above)."""
    if _CHUNK_ROWS is not None:
        return max(1, _CHUNK_ROWS)
    elements = _CUDA_CHUNK_ELEMENTS if device.type == "cuda" else _CPU_CHUNK_ELEMENTS
    rows = min(elements // max(v, 1), math.ceil(n / 16))
    return max(1, min(n, max(rows, _MIN_CHUNK_ROWS)))


class RowStatistics(NamedTuple):
    r"""Statistics of one chunk's logits :math:`z_i` (rows,), in the accumulation dtype,
    relative to the row maximum :math:`m_i = \max_j z_{ij}` (all detached).

    - ``log_total``: :math:`\mathrm{logsumexp}(z_i) - m_i \ge 0`, so the top-1
      probability is :math:`\exp(-\text{log_total})`;
    - ``target``: :math:`z_{iy_i} - m_i \le 0` (class 0 on ignored rows), so the target's
      probability is :math:`\exp(\text{target} - \text{log_total})`;
    - ``entropy``: :math:`H(\mathrm{softmax}(z_i))` when the :class:`RowEpsilon` asks for
      it, else None. It costs one more elementwise pass over the chunk (a log) and a
      chunk-sized temporary: :math:`H = \text{log_total} - \sum_j e_{ij}\log e_{ij}
      / \sum_j e_{ij}` with :math:`e_{ij} = \exp(z_{ij} - m_i)`.
    """

    log_total: Tensor
    target: Tensor
    entropy: Tensor | None


@dataclass
class RowEpsilon:
    """A per-row epsilon decided inside the kernel: ``factor * fn(stats)`` for each chunk's
    :class:`RowStatistics` (``fn`` returns (rows,) values). ``entropy``: whether ``fn``
    reads ``stats.entropy``. After the call, ``values`` holds fn's (N,) results (before
    ``factor``; ignored rows included) in the accumulation dtype."""

    fn: Callable[[RowStatistics], Tensor]
    entropy: bool = False
    factor: float = 1.0
    values: Tensor | None = None


def fused_linear_soft_target_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    epsilon: float | Tensor,
    prior: Tensor | None,
    prior_index: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """The loss of (N, D) ``hidden`` through the (V, D) ``weight`` (and (V,) ``bias``) against
    (N,) int64 ``targets``, without input checks. ``epsilon``: a float, a 0-d or an (N,)
    tensor, or a :class:`RowEpsilon`; ``prior``: None, (V,), (N, V) or, with an (N,) ``prior_index``, an (M, V) table.
    Returns the reduced loss, or (N,) per-row losses for ``reduction="none"``."""
    n = targets.numel()
    if isinstance(epsilon, RowEpsilon):
        eps = epsilon
        epsilon.values = torch.empty(n, dtype=_compute_dtype(hidden.dtype), device=hidden.device)
    else:
        eps = _as_row_epsilon(epsilon, n, _compute_dtype(hidden.dtype), hidden.device)
    if isinstance(eps, float) and eps == 0.0:
        prior = prior_index = None  # the prior has no weight: skip reading it
    if prior is not None:
        prior = prior.detach()
    grad_on = torch.is_grad_enabled()
    needs = (
        grad_on and hidden.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    # the kernel picks its own dtypes: autocast (whose cast the caller has applied) must
    # not recast its GEMMs
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearSoftTargetCrossEntropy.apply(
            hidden, weight, bias, targets, eps, prior, prior_index, ignore_index, reduction, needs
        )


class _LinearSoftTargetCrossEntropy(torch.autograd.Function):
    """``"mean"``/``"sum"`` with gradients wanted: the forward computes the gradients of
    the reduced loss too, chunk by chunk while each chunk's logits are in hand, and keeps
    them in the accumulation dtype; the backward scales them by the incoming gradient (not
    at all for ``loss.backward()``), then casts them to the inputs' dtypes (so a large fp16
    loss scale is applied before rounding). ``"none"`` (whose incoming gradient differs per
    row) and a second backward through a retained graph recompute the chunks in the
    backward instead, from the saved inputs."""

    @staticmethod
    def forward(
        ctx, hidden, weight, bias, targets, eps, prior, prior_index, ignore_index, reduction, needs
    ):
        kernel = _Kernel(hidden, weight, bias, targets, eps, prior, prior_index, ignore_index)
        # 1 / counted rows as a device tensor: reading the count would be a host sync
        scale = kernel.keep.sum().clamp_(min=1).reciprocal() if reduction == "mean" else 1.0
        eager = any(needs) and reduction != "none"
        if eager:
            loss, grads = kernel.run("sum", kernel.keep * scale, needs)
        else:
            loss, grads = kernel.run("rows" if reduction == "none" else "sum", None, needs)
        if isinstance(eps, RowEpsilon):  # the backward reuses the epsilons decided here
            eps = eps.values * eps.factor
        ctx.save_for_backward(hidden, weight, bias, targets, *_tensors(eps, prior, prior_index))
        ctx.grads = grads if eager else None
        ctx.eps_float = eps if isinstance(eps, float) else None
        ctx.has_prior, ctx.has_index = prior is not None, prior_index is not None
        ctx.ignore_index, ctx.scale, ctx.needs = ignore_index, scale, needs
        return loss if reduction == "none" else loss * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        hidden, weight, bias, targets, *rest = ctx.saved_tensors
        if ctx.grads is not None:
            grads, ctx.grads = ctx.grads, None  # handed out once; a further backward recomputes
            # always scaled (O((N + V) D), small next to the O(N V D) kernel): testing
            # whether the incoming gradient is 1 would read it, a host sync
            for g in grads:
                if g is not None:
                    g.mul_(grad_output.to(g.dtype))
        else:
            eps = ctx.eps_float if ctx.eps_float is not None else rest.pop(0)
            prior = rest.pop(0) if ctx.has_prior else None
            prior_index = rest.pop(0) if ctx.has_index else None
            kernel = _Kernel(
                hidden, weight, bias, targets, eps, prior, prior_index, ctx.ignore_index
            )
            row_weight = kernel.keep * ctx.scale * grad_output.reshape(-1).to(kernel.cdt)
            with torch.autocast(hidden.device.type, enabled=False):
                _, grads = kernel.run(None, row_weight, ctx.needs)
        dh, dw, db = grads
        return (
            None if dh is None else dh.to(hidden.dtype),
            None if dw is None else dw.to(weight.dtype),
            None if db is None else db.to(bias.dtype),
            *(None,) * 7,
        )


class _Kernel:
    """One pass over the chunks: the loss and, on request, the three gradients."""

    def __init__(self, hidden, weight, bias, targets, eps, prior, prior_index, ignore_index):
        self.hidden, self.targets, self.eps = hidden, targets, eps
        self.n, self.d = hidden.shape
        self.v = weight.shape[0]
        self.device = hidden.device
        self.cdt = cdt = _compute_dtype(hidden.dtype)
        # Matmul dtype. CUDA multiplies half-precision inputs natively and writes float32
        # (out_dtype): tensor cores, float32 accumulation. CPU low-precision GEMMs are
        # emulated and far slower than float32 ones, so there the weight is upcast once
        # (a V x D copy) and each chunk of hidden rows as it is used.
        self.mdt = hidden.dtype if self.device.type == "cuda" else cdt
        self.weight = weight.to(self.mdt)
        self.bias = None if bias is None else bias.to(cdt)
        keep = targets != ignore_index
        self.keep = keep.to(cdt)
        self.y = torch.where(keep, targets, 0).unsqueeze(1)
        self.smoothed = not (isinstance(eps, float) and eps == 0.0)
        self.prior, self.prior_index = prior, prior_index
        self.per_row = self.smoothed and prior is not None and prior.dim() == 2
        self.shared = self.smoothed and not self.per_row
        if self.shared:  # W^T u and b . u, the shared prior seen through the linear layer
            if prior is None:
                self.u = None
                self.wu = weight.sum(0, dtype=cdt) / self.v
                self.bu = None if bias is None else bias.sum(dtype=cdt) / self.v
            else:
                self.u = prior.to(cdt)
                self.wu = self.u @ weight.to(cdt)
                self.bu = None if bias is None else torch.dot(self.u, self.bias)
        self.buffer: Tensor | None = None
        self.prior_buffer: Tensor | None = None

    def run(self, loss: str | None, row_weight: Tensor | None, needs: tuple[bool, bool, bool]):
        """``loss``: ``"rows"`` (an (N,) tensor, 0 on ignored rows), ``"sum"`` (0-d) or None.
        With ``row_weight`` (N,), also the gradients (of hidden, weight, bias, as ``needs``
        says; None for the others) of sum_i row_weight_i * loss_i, in the accumulation
        dtype."""
        cdt, n, v, d = self.cdt, self.n, self.v, self.d
        grads = row_weight is not None and any(needs)
        need_h, need_w, need_b = needs if grads else (False, False, False)
        dh = torch.empty(n, d, dtype=cdt, device=self.device) if need_h else None
        dw = torch.zeros(v, d, dtype=cdt, device=self.device) if need_w else None
        db = torch.zeros(v, dtype=cdt, device=self.device) if need_b else None
        if need_w and self.mdt != cdt:
            dw_chunk = torch.empty(v, d, dtype=cdt, device=self.device)
        # for a shared prior: sum_i eps_i w_i h_i (weight gradient), sum_i eps_i w_i (bias)
        eh = torch.zeros(d, dtype=cdt, device=self.device) if need_w and self.shared else None
        e_sum = torch.zeros((), dtype=cdt, device=self.device)
        if loss == "rows":
            out = torch.empty(n, dtype=cdt, device=self.device)
        else:
            out = torch.zeros((), dtype=cdt, device=self.device)
        step = chunk_rows(n, v, self.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            h = self.hidden[s:e].to(self.mdt)
            z = self._logits(h, e - s)
            y = self.y[s:e]
            keep = self.keep[s:e]
            m = z.amax(dim=1, keepdim=True)
            z.sub_(m)
            u_rows = self._prior_rows(s, e) if self.per_row else None
            adaptive = isinstance(self.eps, RowEpsilon)
            # loss_i = lse(z_i) - (1 - eps_i) z_iy - eps_i <u_i, z_i>, all in the shifted
            # coordinates z - m_i (t_i sums to 1, so the shift cancels); the parts that
            # read the shifted logits are taken before the exponential overwrites them
            zy = z.gather(1, y).squeeze(1) if loss is not None or adaptive else None
            uz = None
            if loss is not None:
                if self.per_row:
                    uz = torch.linalg.vecdot(u_rows, z)
                elif self.shared:
                    uz = self._dot_u(h) - m.squeeze(1)
            total = exp_(z).sum(dim=1)
            log_total = total.log() if loss is not None or adaptive else None
            if adaptive:
                eps = keep * self._decide_epsilon(s, e, log_total, zy, z, total)
            elif isinstance(self.eps, float):
                eps = keep * self.eps
            else:
                eps = keep * self.eps[s:e]
            if loss is not None:
                row = zy * (eps - 1.0)
                if uz is not None:
                    row.sub_(eps * uz)
                row = torch.where(keep > 0, row.add_(log_total), 0.0)
                if loss == "rows":
                    out[s:e] = row
                else:
                    out += row.sum()
            if not grads:
                continue
            w = row_weight[s:e]
            g = z.mul_((w / total).unsqueeze(1))  # w_i softmax(z_i)
            g.scatter_add_(1, y, ((eps - 1.0) * w).unsqueeze(1))  # - (1 - eps_i) w_i onehot
            ew = eps * w
            if self.per_row:
                g.addcmul_(u_rows, ew.unsqueeze(1), value=-1.0)  # - eps_i w_i u_i
            gm = g if self.mdt == cdt else g.to(self.mdt)
            if need_h:
                _mm(gm, self.weight, out=dh[s:e])
                if self.shared:
                    dh[s:e].addr_(ew, self.wu, alpha=-1.0)
            if need_w:
                if self.mdt == cdt:
                    dw.addmm_(gm.T, h)
                else:
                    dw.add_(_mm(gm.T, h, out=dw_chunk))
                if self.shared:
                    eh.add_(ew @ h.to(cdt))
            if need_b:
                db.add_(g.sum(dim=0))
                if self.shared:
                    e_sum += ew.sum()
        if grads and self.shared:  # the shared prior's part: - u outer (sum eps_i w_i h_i)
            if need_w:
                if self.u is None:
                    dw.sub_(eh / v)
                else:
                    dw.addr_(self.u, eh, alpha=-1.0)
            if need_b:
                db.sub_(e_sum / v if self.u is None else self.u * e_sum)
        return (out if loss is not None else None), (dh, dw, db)

    def _decide_epsilon(
        self, s: int, e: int, log_total: Tensor, zy: Tensor, ez: Tensor, total: Tensor
    ) -> Tensor:
        """The :class:`RowEpsilon`'s epsilon for rows s..e, from the chunk's statistics
        (``ez``: the exponentiated shifted logits, ``total`` their row sums)."""
        entropy = None
        if self.eps.entropy:
            entropy = log_total - torch.special.xlogy(ez, ez).sum(dim=1) / total
        raw = self.eps.fn(RowStatistics(log_total, zy, entropy))
        self.eps.values[s:e] = raw
        return raw * self.eps.factor if self.eps.factor != 1.0 else raw

    def _logits(self, h: Tensor, rows: int) -> Tensor:
        """The chunk's logits h W^T + b in the accumulation dtype, in the reused buffer."""
        if self.buffer is None:
            self.buffer = torch.empty(rows, self.v, dtype=self.cdt, device=self.device)
        z = _mm(h, self.weight.T, out=self.buffer[:rows])
        return z if self.bias is None else z.add_(self.bias)

    def _dot_u(self, h: Tensor) -> Tensor:
        """<u, z_i> for the chunk's rows, as h_i . (W^T u) + b . u: O(rows D)."""
        dot = h.to(self.cdt) @ self.wu
        return dot if self.bu is None else dot.add_(self.bu)

    def _prior_rows(self, s: int, e: int) -> Tensor:
        """u_i for rows s..e of a per-row prior, in the accumulation dtype (a view of the
        caller's rows when they need neither a gather nor a cast)."""
        if self.prior_index is None and self.prior.dtype == self.cdt:
            return self.prior[s:e]
        if self.prior_buffer is None:
            self.prior_buffer = torch.empty(e - s, self.v, dtype=self.cdt, device=self.device)
        u = self.prior_buffer[: e - s]
        if self.prior_index is None:
            return u.copy_(self.prior[s:e])
        if self.prior.dtype == self.cdt:
            return torch.index_select(self.prior, 0, self.prior_index[s:e], out=u)
        return u.copy_(self.prior[self.prior_index[s:e]])


def _mm(a: Tensor, b: Tensor, *, out: Tensor) -> Tensor:
    """a @ b into ``out``; mixed dtypes (CUDA only) multiply natively into out's dtype."""
    if a.dtype == out.dtype:
        return torch.mm(a, b, out=out)
    return torch.mm(a, b, out_dtype=out.dtype, out=out)


def _tensors(*values) -> list[Tensor]:
    return [t for t in values if torch.is_tensor(t)]
