r"""The fused kernel behind :func:`~adaptls.smoothing.soft_target_cross_entropy`.

Row by row, with :math:`z_i = x_i - \max_k x_{ik}`, :math:`s_i = \sum_k e^{z_{ik}}` and the
soft target :math:`t_i = (1 - \varepsilon_i)\,\mathrm{onehot}(y_i) + \varepsilon_i u_i`,

.. math::
    \ell_i = \log s_i - (1 - \varepsilon_i)\, z_{iy_i} - \varepsilon_i \langle u_i, z_i \rangle,
    \qquad
    \frac{\partial \ell_i}{\partial x_i} = \frac{e^{z_i}}{s_i} - t_i ,

the same loss as :math:`-\langle t_i, \log\mathrm{softmax}(x_i) \rangle` and as accurate
as a log-softmax, with one exponential per logit. The exponentials are written into the
gradient's own memory and turned into :math:`e^{z_i} - s_i t_i` in place (the backward
divides by :math:`s_i`), so the only N x K tensor allocated is the gradient itself (plus,
for per-row priors or other dtypes than float32/float64, a buffer of one chunk).

Four ways to run, chosen per call from shapes and dtypes (no host read of tensor values in
any of them):

- **tiny problems** (:func:`_tiny_loss`): plain differentiable operations with a dense
  soft target, where per-call overhead is the whole cost;
- **one pass over the whole tensor** (:class:`_SoftTargetCrossEntropy`) for mid-sized
  problems: a custom autograd Function whose forward computes the loss and the gradient
  in about a dozen operations and whose backward only scales the gradient;
- **chunks of rows**, the same Function, for large problems (every pass over a chunk runs
  while it is in cache) and wherever a pass needs a buffer besides the gradient (per-row
  priors, float16/bfloat16 logits, a loss without gradient), so that buffer stays small;
- **a Function written for the compiler** while ``torch.compile`` traces the call
  (:class:`_TracedSoftTargetCrossEntropy`): no graph break, one fused pass each way.

Validity of the values (targets in ``[0, K)`` or ``ignore_index``, ``prior_index`` in
range) is not checked up front, as that needs a host read of the values (a device sync on
a GPU). A bad index still fails: the gather that reads it raises on CPU (where the error
is then explained by :func:`explain_bad_indices`) and trips a device-side assertion on
CUDA, as ``F.cross_entropy`` does. ``adaptls.losses.checks.DEBUG_CHECKS`` checks
them up front instead, with a clear error on every device.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from adaptls.losses._exp import exp_
from adaptls.losses.checks import explain_bad_indices

# ---------------------------------------------------------------------------- sizes
# The three ways (tiny, one pass, chunks) were timed side by side against
# F.cross_entropy(label_smoothing=0.1), fp32 forward + backward (the table is in
# docs/performance.md, "Earlier records"): the tiny path wins up to a few tens of
# thousands of logits, where per-call overhead is the whole cost; one pass and cache-sized
# chunks win above that, chunks at the largest sizes.
#
# CPU: problems of at most this many logits run as the tiny path (32 Ki elements; the
# name is older than that path: tests shrink both constants together to cross chunk
# boundaries). Where the arithmetic is negligible, a dozen plain operations and autograd's
# own backward in C++ cost less than the custom Function's forward and Python backward.
_MIN_CHUNK_ELEMENTS = 1 << 15
# CPU with one intra-op thread: chunks of rows of this many elements (1 MiB of float32,
# about a core's L2 share), whose passes run while the chunk is in cache, so only the first
# read of the logits and the write of the gradient go to memory (see the table); passes
# that need a buffer besides the gradient (prior rows, float32 work rows) take chunks of
# at most this size and 1/16 of the logits (down to 1/4 of this size), so the buffer adds
# at most max(L / 16, 256 KiB) to the peak (smaller chunks than that cost time: many more
# operations per call).
#
# With more threads every operation ends with a barrier across them, and on a machine
# that other jobs load, a thread waits there until the others are scheduled again: many
# small operations cost many such waits (with two threads on a loaded machine, hundreds
# of chunk operations took several times the time of one pass; docs/performance.md). So
# with several threads, passes without a buffer run as one pass over the whole
# tensor at every size (about a dozen operations, the same 1 L of memory), and those with
# one take at most 16 chunks.
_CHUNK_ELEMENTS = 1 << 18
# CPU, one thread: passes that need no buffer run as one pass over the whole tensor up to
# this many chunks (1 Mi elements: logits and gradient, 8 MiB, stay in the 16 MiB L3):
# fewest operations, no per-chunk overhead; chunks win from a few Mi elements on.
_WHOLE_CHUNKS = 4
# CUDA: every operation is a kernel launch (~5 us), so the tiny path (fewer launches in
# the backward) is taken up to 64 Ki elements (256 KiB, read in < 0.1 us at 4 TB/s: still
# launch-bound), and chunks are large: 8 Mi elements (32 MiB of float32, within an
# H100/H200's 50-60 MiB L2, ~20 us per pass, well above the launch cost); problems up to
# one chunk run as one pass.
_CUDA_MIN_CHUNK_ELEMENTS = 1 << 16
_CUDA_CHUNK_ELEMENTS = 1 << 23


def _tiny_elements(device: torch.device) -> int:
    """Up to this many logits, a loss that needs a gradient runs as :func:`_tiny_loss`."""
    return _MIN_CHUNK_ELEMENTS if device.type == "cpu" else _CUDA_MIN_CHUNK_ELEMENTS


def _chunk_rows(n: int, k: int, device: torch.device, prior_rows: bool, cast: bool) -> int:
    """Rows per chunk (``n``: one pass over the whole tensor).

    ``prior_rows``: per-row priors (a buffer of prior rows per chunk); ``cast``: logits of
    another dtype than the compute dtype, or no gradient to write the exponentials into (a
    work buffer per chunk)."""
    size = n * k
    buffered = prior_rows or cast
    if device.type != "cpu":
        chunk = _CUDA_CHUNK_ELEMENTS
        if buffered:  # the buffer: at most a chunk and 1/16 of the logits
            chunk = min(chunk, max(_CHUNK_ELEMENTS // 4, size // 16))
        whole = chunk
    elif torch.get_num_threads() == 1:  # no barriers: cache-sized chunks
        chunk = _CHUNK_ELEMENTS
        if buffered:
            chunk = whole = min(chunk, max(_CHUNK_ELEMENTS // 4, size // 16))
        else:
            whole = _WHOLE_CHUNKS * _CHUNK_ELEMENTS
    else:  # few operations: one pass, or (for a buffer) at most 16 chunks
        chunk = whole = max(_CHUNK_ELEMENTS // 4, size // 16) if buffered else size
    if size <= whole:
        return max(n, 1)
    return max(1, chunk // max(k, 1))


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
    (:func:`~adaptls.losses.checks.check_inputs` and friends); strategies check
    their inputs once and call this directly. Makes no host read of tensor values.
    """
    cdt = _compute_dtype(logits.dtype)
    if type(epsilon) is float or (isinstance(epsilon, int) and not isinstance(epsilon, bool)):
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
        return _TracedSoftTargetCrossEntropy.apply(
            logits, targets, eps, prior, prior_index, ignore_index, reduction
        )
    needs_grad = logits.requires_grad and torch.is_grad_enabled()
    if needs_grad and logits.numel() <= (
        _MIN_CHUNK_ELEMENTS if logits.is_cpu else _CUDA_MIN_CHUNK_ELEMENTS
    ):  # as _tiny_elements, inlined: this runs on every call
        try:
            return _tiny_loss(logits, targets, eps, prior, prior_index, ignore_index, reduction)
        except (RuntimeError, IndexError) as err:
            explain_bad_indices(targets, logits.shape[-1], ignore_index, prior, prior_index, err)
            raise
    # Function.apply's Python wrapper only matters under functorch transforms (vmap, grad);
    # elsewhere the C entry point it ends in is called directly (the wrapper's cost is
    # per call, so it weighs at the smallest shapes).
    apply = (
        _SoftTargetCrossEntropy.apply if torch._C._are_functorch_transforms_active() else _RAW_APPLY
    )
    try:
        return apply(logits, targets, eps, prior, prior_index, ignore_index, reduction, needs_grad)
    except (RuntimeError, IndexError) as err:
        explain_bad_indices(targets, logits.shape[-1], ignore_index, prior, prior_index, err)
        raise


# ---------------------------------------------------------------------------- eager
class _SoftTargetCrossEntropy(torch.autograd.Function):
    """The reduced loss; nothing N x K is kept but the gradient itself.

    float32/float64 logits that need a gradient: the forward computes the gradient too, in
    the same passes (as ``e^z - s t`` with z = x - max x and s = sum e^z per row, one
    exponential per logit), and the backward scales it in place by the incoming gradient
    times w / s (w: the row weights, 1 / rows counted for "mean", 0 on ignored rows: all on
    the device, no host read) and hands it out. float16/bfloat16 logits: the forward
    computes the loss only and the backward recomputes the gradient in float32, applying
    the incoming gradient (e.g. a loss scale) before rounding to the logits' dtype, so
    small gradients do not underflow. A second backward through the same graph
    (``retain_graph=True``) recomputes too, with the same arithmetic, so it gives the same
    gradient bit for bit. Differentiable once.
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
        rows, grad, sums = plan.forward(eager)  # the loss of every row, ignored ones too
        out = rows.mul_(w) if reduction == "none" else torch.dot(rows, w)
        if needs_grad:
            ctx.save_for_backward(logits)
            plan.logits = None  # the saved tensor is used instead (version-checked)
            # Not saved tensors: the backward hands the gradient out and lets go of it, so
            # autograd can take it as the logits' .grad without a copy.
            ctx.grad, ctx.sums, ctx.w, ctx.plan = grad, sums, w, plan
        return out

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():  # create_graph=True: refuse a second differentiation
            return _backward_once(ctx, grad_output)
        return _backward(ctx, grad_output)


def _backward(ctx, grad_output):
    weight = ctx.w * grad_output  # (N,), on the device
    grad = ctx.grad
    if grad is not None:
        ctx.grad = None  # handed out once; a further backward recomputes
        grad.mul_(weight.div_(ctx.sums).unsqueeze(1))
        return grad, None, None, None, None, None, None, None
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

    __slots__ = (
        "buffer",
        "cdt",
        "eps",
        "index",
        "logits",
        "prior_rows",
        "step",
        "u",
        "uniform",
        "yc",
    )

    def __init__(self, logits, yc, eps, prior, prior_index, cdt, direct: bool) -> None:
        n, k = logits.shape
        self.logits, self.yc, self.eps, self.index, self.cdt = logits, yc, eps, prior_index, cdt
        self.uniform = prior is None
        if type(eps) is float and eps == 0.0:
            self.u = None
        elif prior is None:
            self.u = _uniform(k, cdt, logits.device)
        else:
            self.u = prior
        self.prior_rows = self.u is not None and self.u.dim() == 2
        self.step = _chunk_rows(n, k, logits.device, self.prior_rows, not direct)
        self.buffer: Tensor | None = None

    def forward(self, grad: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The loss of every row (ignored ones too) and, with ``grad``, the gradient's
        numerator e^z - s t in one (N, K) tensor of the compute dtype, and s."""
        logits, yc, eps, cdt, step = self.logits, self.yc, self.eps, self.cdt, self.step
        n, k = logits.shape
        if step >= n:  # one pass over the whole tensor
            u = self._prior(0, n)
            rows, g, s = _pass(logits, yc, eps, u, None, cdt, True)
            if not grad:
                return rows, None, None
            return rows, _numerator(g, yc, eps, u, s, self.uniform), s
        rows = torch.empty(n, dtype=cdt, device=logits.device)
        if grad:
            out = torch.empty((n, k), dtype=cdt, device=logits.device)
            sums = torch.empty(n, dtype=cdt, device=logits.device)
        else:
            work = torch.empty((step, k), dtype=cdt, device=logits.device)
        for i in range(0, n, step):
            e = min(i + step, n)
            g = out[i:e] if grad else work[: e - i]
            e_i = eps if type(eps) is float else eps[i:e]
            u = self._prior(i, e)
            rows[i:e], g, s = _pass(logits[i:e], yc[i:e], e_i, u, g, cdt, True)
            if grad:
                sums[i:e] = s
                _numerator(g, yc[i:e], e_i, u, s, self.uniform)
        return (rows, out, sums) if grad else (rows, None, None)

    def gradient(self, weight: Tensor) -> Tensor:
        """The gradient, recomputed: (e^z - s t) * ``weight`` / s, in the logits' dtype,
        with the same arithmetic as the forward's gradient scaled in the backward."""
        logits, yc, eps, cdt, step = self.logits, self.yc, self.eps, self.cdt, self.step
        n, k = logits.shape
        direct = logits.dtype == cdt
        if step >= n:
            u = self._prior(0, n)
            _, g, s = _pass(logits, yc, eps, u, None, cdt, False)
            _numerator(g, yc, eps, u, s, self.uniform).mul_(weight.div_(s).unsqueeze(1))
            return g if direct else g.to(logits.dtype)
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        work = None if direct else torch.empty((step, k), dtype=cdt, device=logits.device)
        for i in range(0, n, step):
            e = min(i + step, n)
            e_i = eps if type(eps) is float else eps[i:e]
            u = self._prior(i, e)
            g = grad[i:e] if direct else work[: e - i]
            _, g, s = _pass(logits[i:e], yc[i:e], e_i, u, g, cdt, False)
            _numerator(g, yc[i:e], e_i, u, s, self.uniform).mul_(weight[i:e].div(s).unsqueeze(1))
            if not direct:
                grad[i:e] = g
        return grad

    def _prior(self, s: int, e: int) -> Tensor | None:
        """The prior for rows s..e: the (K,) vector, or their rows in the compute dtype
        (gathered or cast into one reused buffer)."""
        u = self.u
        if not self.prior_rows:
            return u
        if self.index is None and u.dtype == self.cdt:
            return u[s:e]
        if self.buffer is None or self.buffer.shape[0] < e - s:
            self.buffer = torch.empty((e - s, u.shape[1]), dtype=self.cdt, device=u.device)
        buffer = self.buffer[: e - s]
        if self.index is None:
            return buffer.copy_(u[s:e])
        return torch.index_select(u, 0, self.index[s:e], out=buffer)


def _pass(x, yc, eps, u, g, cdt, loss: bool) -> tuple[Tensor | None, Tensor, Tensor]:
    """One pass over rows x: their loss (if ``loss``), e^z with z = x - max x (in ``g``,
    allocated when None) and s = sum e^z per row.

    loss_i = log s_i - (1 - e_i) z_iy - e_i <u_i, z_i> (as accurate as a log-softmax);
    one exponential per logit, the costly part of every pass (the log-softmax and the
    softmax each take one).
    """
    m = x.amax(1, keepdim=True)  # exact in the logits' dtype; the subtraction promotes
    if m.dtype != cdt:
        m = m.to(cdt)
    b = None
    if loss and u is not None and u.dim() == 2:
        # per-row priors: <u_i, z_i> = <u_i, x_i> - m_i, the products summed in g's memory
        # before z goes there (a row-wise dot product would allocate an N x K temporary)
        if g is None:
            g = torch.empty(x.shape, dtype=cdt, device=x.device)
        b = torch.mul(x, u, out=g).sum(1).sub_(m.squeeze(1))
    g = torch.sub(x, m) if g is None else torch.sub(x, m, out=g)
    rows = None
    if loss:
        zy = g.gather(1, yc).squeeze(1)  # z at the target
        if u is None:
            rows = zy.neg_()
        elif type(eps) is float and u.dim() == 1:  # -(1 - e) z_y - e <u, z>: one operation
            rows = torch.addmv(zy, g, u, beta=eps - 1.0, alpha=-eps)
        else:
            rows = torch.lerp(zy, g @ u if b is None else b, eps).neg_()
    exp_(g)
    s = g.sum(1)
    if loss:
        rows.add_(s.log())
    return rows, g, s


def _numerator(g, yc, eps, u, s, uniform: bool) -> Tensor:
    """e^z (in ``g``) minus s t, in place: the gradient softmax - t times s.

    ``uniform``: u is 1/K, so eps s u is one value per row, subtracted as a broadcast
    column (a rank-1 update reads u and costs more than twice as much)."""
    if u is None:
        g.scatter_add_(1, yc, s.neg().unsqueeze(1))
        return g
    se = s * eps
    if uniform:
        g.sub_(se.mul(1.0 / g.shape[1]).unsqueeze(1))
    elif u.dim() == 1:
        g.addr_(se, u, alpha=-1.0)
    else:
        g.addcmul_(u, se.unsqueeze(1), value=-1.0)
    g.scatter_add_(1, yc, (se - s).unsqueeze(1))
    return g


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
    # no torch.no_grad() needed: nothing here requires a gradient (targets, detached
    # epsilon and prior), and entering it costs as much as an operation
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
    if logits.dtype == cdt:
        lsm = torch.log_softmax(logits, 1)
    else:
        lsm = torch.log_softmax(logits, 1, dtype=cdt)
    if reduction == "none":
        return (lsm * t).sum(1)
    return torch.dot(lsm.view(-1), t.view(-1))


# ---------------------------------------------------------------------------- compiled
class _TracedSoftTargetCrossEntropy(torch.autograd.Function):
    """The loss for ``torch.compile`` to trace (no graph break; no chunk loop to unroll).

    Written for the compiler's fusion: the forward is row reductions over the logits (max,
    sum of exponentials, the target's logit, the prior's mean) and saves only the logits
    and one number per row (the log-sum-exp); the backward is one elementwise expression,
    (e^(x - lse) - t) * w * grad, with the one-hot part of t as a comparison with the class
    index, so both compile to a single pass each (three reads or writes of N x K in all).
    The derived backward of the same loss in plain operations costs more (a scatter for
    the gather, a second reduction), as does PyTorch's own label smoothing, compiled (two
    passes each way); the compiled rows of ``scripts/bench_loss.py`` compare them.
    """

    @staticmethod
    def forward(ctx, logits, targets, eps, prior, prior_index, ignore_index, reduction):
        cdt = torch.float64 if logits.dtype == torch.float64 else torch.float32
        x = logits if logits.dtype == cdt else logits.to(cdt)
        keep = targets != ignore_index
        yc = torch.where(keep, targets, 0).unsqueeze(1)
        m = x.amax(1, keepdim=True)
        lse = (x - m).exp().sum(1, keepdim=True).log() + m
        xy = x.gather(1, yc).squeeze(1)
        rows = lse.squeeze(1) - xy
        smoothed = not (type(eps) is float and eps == 0.0)
        if smoothed:
            if prior is None:
                mean = x.mean(1)
            else:
                u = prior if prior_index is None else prior[prior_index]
                mean = (x * u.to(cdt)).sum(1)
            rows = rows + eps * (xy - mean)
        w = keep.to(cdt)
        if reduction == "mean":
            w = w / keep.sum().clamp(min=1)
        ctx.save_for_backward(logits, lse, yc, w, *_tensors(eps, prior, prior_index))
        ctx.eps = eps if type(eps) is float else None
        ctx.smoothed, ctx.has_prior, ctx.has_index = (
            smoothed,
            prior is not None,
            (prior_index is not None),
        )
        return rows * w if reduction == "none" else (rows * w).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        logits, lse, yc, w, *rest = ctx.saved_tensors
        cdt = lse.dtype
        eps = ctx.eps if ctx.eps is not None else rest.pop(0).unsqueeze(1)
        prior = rest.pop(0) if ctx.has_prior else None
        prior_index = rest.pop(0) if ctx.has_index else None
        x = logits if logits.dtype == cdt else logits.to(cdt)
        k = x.shape[1]
        onehot = torch.arange(k, device=x.device) == yc
        if not ctx.smoothed:
            t = onehot.to(cdt)
        elif prior is None:
            t = torch.where(onehot, 1.0 - eps + eps / k, eps / k)
        else:
            u = prior if prior_index is None else prior[prior_index]
            t = torch.where(onehot, 1.0 - eps, 0.0) + eps * u.to(cdt)
        grad = (torch.exp(x - lse) - t) * (w * grad_output).unsqueeze(1)
        return grad.to(logits.dtype), None, None, None, None, None, None


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


def _tensors(*values) -> list[Tensor]:
    return [t for t in values if torch.is_tensor(t)]
