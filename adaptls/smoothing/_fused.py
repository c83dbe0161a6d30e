r"""The fused kernel behind :func:`~adaptls.smoothing.soft_target_cross_entropy`.

Row by row, with the log-softmax :math:`l_i = x_i - \mathrm{logsumexp}(x_i)` and the soft
target :math:`t_i = (1 - \varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i u_i`,

.. math::
    \ell_i = -\langle t_i, l_i \rangle
           = -(1 - \varepsilon_i)\, l_{iy_i} - \varepsilon_i \langle u_i, l_i \rangle,
    \qquad
    \frac{\partial \ell_i}{\partial x_i} = e^{l_i} - t_i ,

as accurate as a log-softmax. The log-softmax is written into the gradient's own memory
and turned into the gradient in place, so the only N x K tensor allocated is the gradient
itself (plus, for per-row priors, chunks of prior rows).

Four ways to run, chosen per call from shapes and dtypes (no host read of tensor values in
any of them):

- **tiny problems** (:func:`_tiny_loss`): plain differentiable operations with a dense
  soft target, where per-call overhead is the whole cost;
- **one pass over the whole tensor** (:class:`_SoftTargetCrossEntropy`): a custom
  autograd Function whose forward computes the loss and the gradient in about ten
  operations and whose backward only scales the gradient;
- **chunks of rows**, the same Function, where a pass needs an N x K buffer besides the
  gradient (per-row priors, float16/bfloat16 logits, a loss without gradient), so that
  buffer stays a fraction of the logits;
- **plain differentiable operations** while ``torch.compile`` traces the call
  (:func:`_traced_loss`), which the compiler fuses itself (no graph break).

Validity of the values (targets in ``[0, K)`` or ``ignore_index``, ``prior_index`` in
range) is not checked up front, as that needs a host read of the values (a device sync on
a GPU). A bad index still fails: the gather that reads it raises on CPU (where the error
is then explained by :func:`explain_bad_indices`) and trips a device-side assertion on
CUDA, as ``F.cross_entropy`` does. ``adaptls.smoothing.functional.DEBUG_CHECKS`` checks
them up front instead, with a clear error on every device.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# ---------------------------------------------------------------------------- sizes
# Measured on a 2-core EPYC (512 KiB L2 per core, 16 MiB L3) shared with other jobs, fp32
# forward + backward of uniform smoothing over F.cross_entropy(label_smoothing=0.1):
#
#   1 thread, CPU time       tiny   one pass  chunks of 256 Ki elements
#   128 x 10                 0.93x  0.97x     0.98x
#   1024 x 10                0.92x  0.94x     0.95x
#   256 x 100                0.94x  0.98x     1.32x
#   4096 x 100               0.52x  0.40x     0.63x
#   65536 x 10               0.65x  0.56x     0.64x
#   1024 x 1000              1.00x  0.67x     0.86x
#   8192 x 1000              0.54x  0.44x     0.45x
#   1024 x 32000                    0.52x     0.54x
#   2 threads, process CPU time
#   8192 x 1000                     0.52x     1.51x
#   1024 x 32000                    0.52x     3.01x
#
# One pass over the whole tensor never loses to cache-sized chunks with one thread (the
# passes are compute-bound there), and with two threads on a loaded machine chunks cost
# 3-6x more CPU: every operation ends with a barrier across the threads, and many small
# operations mean many barriers, each spun on while the other thread is descheduled. One
# pass needs no more memory (the log-softmax is written into the gradient), so it is the
# default at every size; chunks are for the cases that need a buffer.
#
# CPU: problems of at most this many logits run as the tiny path (32 Ki elements; the
# name is older than that path: tests shrink both constants together to cross chunk
# boundaries). Where the arithmetic is negligible, a dozen plain operations and autograd's
# own backward cost less than the custom Function's forward and Python backward (see the
# table); from 4096 x 100 on the dense target's passes cost more than that saves.
_MIN_CHUNK_ELEMENTS = 1 << 15
# CPU: a pass that needs a buffer (prior rows, float32 work rows) takes chunks of at least
# this many elements (1 MiB of float32: a core's L2 share) and at most 1/_MAX_CHUNKS of
# the problem, so the buffer is at most max(1 MiB, L / 16) and there are at most 16 chunks
# (each one a round of barriers; see above). Problems up to one chunk run in one pass.
_CHUNK_ELEMENTS = 1 << 18
_MAX_CHUNKS = 16
# CUDA: every operation is a kernel launch (~5 us), so the tiny path (fewer launches in
# the backward) is taken up to 64 Ki elements (256 KiB, read in < 0.1 us at 4 TB/s: still
# launch-bound), and chunks that need a buffer are large: 8 Mi elements (32 MiB of
# float32, within an H100/H200's 50-60 MiB L2, ~20 us per pass, well above the launch
# cost), with the same 1/16 bound.
_CUDA_MIN_CHUNK_ELEMENTS = 1 << 16
_CUDA_CHUNK_ELEMENTS = 1 << 23


def _tiny_elements(device: torch.device) -> int:
    """Up to this many logits, a loss that needs a gradient runs as :func:`_tiny_loss`."""
    return _MIN_CHUNK_ELEMENTS if device.type == "cpu" else _CUDA_MIN_CHUNK_ELEMENTS


def _chunk_rows(n: int, k: int, device: torch.device, prior_rows: bool, cast: bool) -> int:
    """Rows per chunk (``n``: one pass over the whole tensor).

    ``prior_rows``: per-row priors (a buffer of prior rows per chunk); ``cast``: logits of
    another dtype than the compute dtype, or no gradient to write the log-softmax into (a
    work buffer per chunk). Without either, always one pass."""
    size = n * k
    chunk = _CHUNK_ELEMENTS if device.type == "cpu" else _CUDA_CHUNK_ELEMENTS
    if not (prior_rows or cast) or size <= chunk:
        return max(n, 1)
    elements = max(chunk, -(-size // _MAX_CHUNKS))
    return max(1, elements // max(k, 1))


# ---------------------------------------------------------------------------- entry
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
    their inputs once and call this directly. Makes no host read of tensor values.
    """
    cdt = _compute_dtype(logits.dtype)
    if isinstance(epsilon, float | int) and not isinstance(epsilon, bool):
        eps: float | Tensor = float(epsilon)
        if eps == 0.0:
            prior = prior_index = None  # the prior has no weight: skip reading it
    else:
        eps = epsilon.detach()
        if eps.dtype != cdt or eps.device != logits.device:
            eps = eps.to(dtype=cdt, device=logits.device)
        if eps.dim() != 1:  # 0-d: an expanded view, no copy; shaped like targets: flat
            eps = eps.expand(targets.shape[0]) if eps.dim() == 0 else eps.reshape(-1)
    if prior is not None:
        prior = prior.detach()
        if prior.dim() == 1 or prior_index is not None:  # small: cast once, not per chunk
            prior = prior.to(cdt)
    if torch.compiler.is_compiling():
        return _traced_loss(logits, targets, eps, prior, prior_index, ignore_index, reduction)
    needs_grad = logits.requires_grad and torch.is_grad_enabled()
    if needs_grad and logits.numel() <= _tiny_elements(logits.device):
        try:
            return _tiny_loss(logits, targets, eps, prior, prior_index, ignore_index, reduction)
        except (RuntimeError, IndexError) as err:
            explain_bad_indices(targets, logits.shape[-1], ignore_index, prior, prior_index, err)
            raise
    # Function.apply's Python wrapper only matters under functorch transforms (vmap, grad);
    # elsewhere the C entry point it ends in is called directly (~13 us less per call, 6%
    # of a 128 x 10 forward + backward on CPU).
    apply = (
        _SoftTargetCrossEntropy.apply if torch._C._are_functorch_transforms_active() else _RAW_APPLY
    )
    try:
        return apply(logits, targets, eps, prior, prior_index, ignore_index, reduction, needs_grad)
    except (RuntimeError, IndexError) as err:
        explain_bad_indices(targets, logits.shape[-1], ignore_index, prior, prior_index, err)
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


# ---------------------------------------------------------------------------- eager
class _SoftTargetCrossEntropy(torch.autograd.Function):
    """The reduced loss; nothing N x K is kept but the gradient itself.

    float32/float64 logits that need a gradient: the forward computes the gradient rows
    ``softmax - t`` too, in the same pass, and the backward scales them in
    place by the incoming gradient times the row weights (1 / rows counted for "mean", 0
    on ignored rows: device-side, no host read) and hands them out. float16/bfloat16
    logits: the forward computes the loss only and the backward recomputes the gradient
    in float32, applying the incoming gradient (e.g. a loss scale) before rounding to the
    logits' dtype, so small gradients do not underflow. A second backward through the same
    graph (``retain_graph=True``) recomputes too, with the same arithmetic, so it gives
    the same gradient bit for bit. Differentiable once.
    """

    @staticmethod
    def forward(ctx, logits, targets, eps, prior, prior_index, ignore_index, reduction, needs_grad):
        cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
        keep = targets != ignore_index
        yc = (targets * keep).unsqueeze(1)  # ignored rows read class 0; their weight is 0
        if reduction == "mean":  # row weights 1 / (rows counted), 0 where ignored
            count = keep.sum().clamp_(min=1)
            if cdt == torch.get_default_dtype():  # bool / int: one operation
                w = torch.div(keep, count)
            else:
                w = keep.to(cdt).div_(count)
        else:
            w = keep.to(cdt)
        eager = needs_grad and logits.dtype == cdt
        plan = _Plan(logits, yc, eps, prior, prior_index, cdt, eager)
        rows, grad = plan.forward(eager)  # the loss of every row, ignored ones too
        out = rows.mul_(w) if reduction == "none" else torch.dot(rows, w)
        if needs_grad:
            ctx.save_for_backward(logits)
            plan.logits = None  # the saved tensor is used instead (version-checked)
            # Not saved tensors: the backward hands the gradient out and lets go of it, so
            # autograd can take it as the logits' .grad without a copy.
            ctx.grad, ctx.w, ctx.plan = grad, w, plan
        return out

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():  # create_graph=True: refuse a second differentiation
            return _backward_once(ctx, grad_output)
        return _backward(ctx, grad_output)


def _backward(ctx, grad_output):
    weight = (ctx.w * grad_output).unsqueeze(1)  # (N, 1), on the device
    grad = ctx.grad
    if grad is not None:
        ctx.grad = None  # handed out once; a further backward recomputes
        return grad.mul_(weight), None, None, None, None, None, None, None
    plan = ctx.plan
    plan.logits = ctx.saved_tensors[0]
    grad = plan.gradient(weight)
    plan.logits = None
    return grad, None, None, None, None, None, None, None


_backward_once = once_differentiable(_backward)
# torch.autograd.Function.apply minus its functorch handling: torch._C._FunctionBase.apply
_RAW_APPLY = super(torch.autograd.Function, _SoftTargetCrossEntropy).apply


class _Plan:
    """How to run one call: the prior as the kernel reads it, and the chunk size.

    ``u``: None (epsilon 0: no prior), a (K,) vector (uniform or shared), (N, K) rows or,
    with ``index``, an (M, K) table whose rows are gathered chunk by chunk. ``direct``:
    the gradient is written in the compute dtype straight into its own tensor (else the
    passes need a work buffer: chunks).
    """

    __slots__ = ("cdt", "eps", "index", "logits", "prior_rows", "step", "u", "yc")

    def __init__(self, logits, yc, eps, prior, prior_index, cdt, direct: bool) -> None:
        n, k = logits.shape
        self.logits, self.yc, self.eps, self.index, self.cdt = logits, yc, eps, prior_index, cdt
        if type(eps) is float and eps == 0.0:
            self.u = None
        elif prior is None:
            self.u = _uniform(k, cdt, logits.device)
        else:
            self.u = prior
        self.prior_rows = self.u is not None and self.u.dim() == 2
        self.step = _chunk_rows(n, k, logits.device, self.prior_rows, not direct)

    def forward(self, grad: bool) -> tuple[Tensor, Tensor | None]:
        """The loss of every row (ignored ones too) and, with ``grad``, the gradient rows
        softmax - t (unscaled) in one (N, K) tensor of the compute dtype."""
        logits, yc, eps, cdt, step = self.logits, self.yc, self.eps, self.cdt, self.step
        n, k = logits.shape
        if step >= n:  # one pass over the whole tensor
            rows, g = _pass(logits, yc, eps, self._prior(0, n), None, cdt, grad, True)
            return rows, (g if grad else None)
        rows = torch.empty(n, dtype=cdt, device=logits.device)
        if grad:
            out = torch.empty((n, k), dtype=cdt, device=logits.device)
        else:
            work = torch.empty((step, k), dtype=cdt, device=logits.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            g = out[s:e] if grad else work[: e - s]
            e_s = eps if type(eps) is float else eps[s:e]
            rows[s:e] = _pass(logits[s:e], yc[s:e], e_s, self._prior(s, e), g, cdt, grad, True)[0]
        return rows, (out if grad else None)

    def gradient(self, weight: Tensor) -> Tensor:
        """The gradient, recomputed: (softmax - t) * ``weight`` ((N, 1)), in the logits'
        dtype, with the same arithmetic as the forward's gradient scaled afterwards."""
        logits, yc, eps, cdt, step = self.logits, self.yc, self.eps, self.cdt, self.step
        n, k = logits.shape
        direct = logits.dtype == cdt
        if step >= n:
            g = _pass(logits, yc, eps, self._prior(0, n), None, cdt, True, False)[1]
            g.mul_(weight)
            return g if direct else g.to(logits.dtype)
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        work = None if direct else torch.empty((step, k), dtype=cdt, device=logits.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            e_s = eps if type(eps) is float else eps[s:e]
            g = grad[s:e] if direct else work[: e - s]
            _pass(logits[s:e], yc[s:e], e_s, self._prior(s, e), g, cdt, True, False)
            g.mul_(weight[s:e])
            if not direct:
                grad[s:e] = g
        return grad

    def _prior(self, s: int, e: int) -> Tensor | None:
        """The prior for rows s..e: the (K,) vector, or their rows in the compute dtype."""
        u = self.u
        if not self.prior_rows:
            return u
        if self.index is not None:
            return torch.index_select(u, 0, self.index[s:e])
        u = u[s:e]
        return u if u.dtype == self.cdt else u.to(self.cdt)


def _pass(x, yc, eps, u, g, cdt, grad: bool, loss: bool) -> tuple[Tensor | None, Tensor]:
    """One pass over rows x: (their loss if ``loss``, log-softmax or, with ``grad``,
    softmax - t), written into ``g`` (allocated when None).

    About ten tensor operations: log-softmax, a gather, one matrix-vector product (or row
    dot products), and for the gradient exp, the prior's share and a scatter of the
    target's share.
    """
    if g is None:
        g = torch.log_softmax(x, 1) if x.dtype == cdt else torch.log_softmax(x, 1, dtype=cdt)
    else:
        torch.log_softmax(x, 1, dtype=cdt, out=g)
    rows = None
    if loss:
        a = g.gather(1, yc).squeeze(1)  # log-softmax at the target
        if u is None:
            rows = a.neg_()
        elif type(eps) is float and u.dim() == 1:  # -(1 - e) a - e <u, l>: one operation
            rows = torch.addmv(a, g, u, beta=eps - 1.0, alpha=-eps)
        else:
            b = g @ u if u.dim() == 1 else torch.linalg.vecdot(g, u)
            rows = torch.lerp(a, b, eps).neg_()
    if grad:
        g.exp_()
        if type(eps) is float:
            if u is not None:
                g.sub_(u, alpha=eps)
            g.scatter_(1, yc, eps - 1.0, reduce="add")
        else:
            if u.dim() == 1:
                g.addr_(eps, u, alpha=-1.0)
            else:
                g.addcmul_(u, eps.unsqueeze(1), value=-1.0)
            g.scatter_add_(1, yc, (eps - 1.0).unsqueeze(1))
    return rows, g


@functools.lru_cache(maxsize=64)
def _uniform(k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The uniform prior 1/K (cached: one tensor creation less per call)."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.full((k,), 1.0 / k, dtype=dtype, device=device)


# ---------------------------------------------------------------------------- tiny
def _tiny_loss(logits, targets, eps, prior, prior_index, ignore_index, reduction):
    """The loss as <log softmax(x), T> with the weighted soft target T = -w_i t_i built
    densely (w_i: 1 / rows counted for "mean", 1 otherwise, 0 where ignored), in plain
    differentiable operations.

    For problems so small that per-call overhead is the cost: no custom backward (autograd
    runs log-softmax's own, in C++), about a dozen operations in all. Its gradient,
    (softmax(x_i) - t_i) w_i, is the fused kernel's; memory (T, the saved log-softmax and
    the gradient) is three times the logits, a few hundred KiB at most.
    """
    n, k = logits.shape
    cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        keep = targets != ignore_index
        yc = (targets * keep).unsqueeze(1)  # ignored rows read class 0; their weight is 0
        if reduction == "mean":  # -1 / (rows counted), 0 where ignored
            count = keep.sum().clamp_(min=1).neg_()
            if cdt == torch.get_default_dtype():
                w = torch.div(keep, count)
            else:
                w = keep.to(cdt).div_(count)
        else:
            w = keep.to(cdt).neg_()
        if type(eps) is float and eps == 0.0:
            t = torch.zeros((n, k), dtype=cdt, device=logits.device)
            t.scatter_(1, yc, w.unsqueeze(1))
        else:
            if prior is None:
                u = _uniform(k, cdt, logits.device)
            elif prior_index is not None:
                u = prior[prior_index]
            else:
                u = prior if prior.dtype == cdt else prior.to(cdt)
            we = w * eps
            t = torch.outer(we, u) if u.dim() == 1 else u * we.unsqueeze(1)
            t.scatter_add_(1, yc, (w - we).unsqueeze(1))
    lsm = (
        torch.log_softmax(logits, 1)
        if logits.dtype == cdt
        else (torch.log_softmax(logits, 1, dtype=cdt))
    )
    if reduction == "none":
        return (lsm * t).sum(1)
    return torch.dot(lsm.view(-1), t.view(-1))


# ---------------------------------------------------------------------------- compiled
def _traced_loss(logits, targets, eps, prior, prior_index, ignore_index, reduction):
    """The loss in plain differentiable operations, for ``torch.compile`` to fuse (its
    backward is derived by the compiler). Same formula and reduction as the eager kernel."""
    cdt = _compute_dtype(logits.dtype)
    keep = targets != ignore_index
    yc = torch.where(keep, targets, 0).unsqueeze(1)
    lsm = torch.log_softmax(logits, 1, dtype=cdt)
    rows = lsm.gather(1, yc).squeeze(1)
    if not (isinstance(eps, float) and eps == 0.0):
        if prior is None:
            smooth = lsm.mean(1)
        elif prior.dim() == 1:
            smooth = lsm @ prior
        else:
            u = prior[prior_index] if prior_index is not None else prior
            smooth = (lsm * u.to(cdt)).sum(1)
        rows = torch.lerp(rows, smooth, eps)
    rows = torch.where(keep, -rows, 0.0)
    if reduction == "none":
        return rows
    total = rows.sum()
    if reduction == "mean":
        total = total / keep.sum().clamp(min=1)
    return total


# ---------------------------------------------------------------------------- helpers
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
    """Whether the incoming gradient is 1 (``loss.backward()``). Reads its value: a host
    sync on a GPU. Not used by this kernel (its backward always scales, on the device);
    kept for :mod:`adaptls.smoothing._fused_linear`."""
    if grad_output.dim() == 0:
        return grad_output.item() == 1.0
    return bool((grad_output == 1.0).all())
