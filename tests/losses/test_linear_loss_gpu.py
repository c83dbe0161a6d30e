"""CUDA checks of linear_soft_target_cross_entropy, skipped without a GPU.

float32 inputs run float32 GEMMs; bfloat16 inputs multiply natively into float32 logits
(``torch.mm(..., out_dtype=torch.float32)``) and round the logits' gradient to bfloat16
for the two gradient GEMMs, as F.linear's own backward does. Both are compared with the
unfused loss in float64 of the same inputs, within rounding bounds derived as in
test_linear_loss.py (worst-case n u for a sum of n terms): D + 1 terms per logit, V per
softmax denominator and hidden-gradient entry, N per weight- and bias-gradient entry.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import linear_soft_target_cross_entropy, soft_target_cross_entropy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

U32 = 2.0**-24
BF16 = 2.0**-8  # unit roundoff of bfloat16


def inputs(n, d, v, dtype, prior_kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g) / d**0.5
    bias = torch.randn(v, generator=g) * 0.1
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::7] = -100
    epsilon = torch.rand(n, generator=g) * 0.3
    table = torch.softmax(torch.randn(16, v, generator=g), -1)
    prior, index = {
        "uniform": (None, None),
        "shared": (table[0], None),
        "table": (table, targets.clamp(min=0) % 16),
    }[prior_kind]
    cuda = [t.to(dtype).cuda() for t in (hidden, weight, bias)]
    rest = [None if t is None else t.cuda() for t in (targets, epsilon, prior, index)]
    return cuda, rest


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "table"])
def test_cuda_matches_the_unfused_loss(dtype, prior_kind):
    n, d, v = 3000, 128, 8000  # several chunks, the last one partial
    (h, w, b), (y, eps, prior, index) = inputs(n, d, v, dtype, prior_kind)
    leaves = [t.clone().requires_grad_() for t in (h, w, b)]
    loss = linear_soft_target_cross_entropy(
        leaves[0], leaves[1], y, eps, prior, prior_index=index, bias=leaves[2]
    )
    grads = torch.autograd.grad(loss, leaves)
    ref_leaves = [t.double().requires_grad_() for t in (h, w, b)]
    ref = soft_target_cross_entropy(
        F.linear(*ref_leaves), y, eps.double(), prior, prior_index=index
    )
    ref_grads = torch.autograd.grad(ref, ref_leaves)

    assert loss.dtype == torch.float32 and all(g.dtype == dtype for g in grads)
    counted = int((y != -100).sum())
    a = float((h.double().abs() @ w.double().abs().T + b.double().abs()).max())
    dz = (d + 1) * U32 * a
    row = 3 * dz + (2 * v + d + 8) * U32 * (a + 1)
    # mean over counted rows of per-row errors, plus the N-term sum's rounding
    atol = n * (row + U32 * float(ref.detach()) * counted) / counted
    torch.testing.assert_close(loss.double(), ref, atol=atol, rtol=0)
    # the logits' gradient p - t is rounded to bfloat16 for the gradient GEMMs: at most
    # BF16 relative per entry, and its entries sum (in absolute value) to at most 2 per row
    g_round = 2 * BF16 if dtype == torch.bfloat16 else 0.0
    rtol = BF16 if dtype == torch.bfloat16 else 0.0
    scales = {
        "hidden": float(w.abs().max()) / counted * (2 * dz + (6 * v + 4) * U32 + g_round),
        "weight": float(h.abs().max()) * (2 * dz + (v + 2 * n + 10) * U32 + g_round),
        "bias": 2 * dz + (v + 2 * n + 10) * U32 + g_round,
    }
    for (name, atol), g, r in zip(scales.items(), grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), r, atol=atol, rtol=rtol, msg=name)


def test_cuda_memory_stays_far_below_the_logits():
    n, d, v = 8192, 256, 32000
    (h, w, b), (y, eps, prior, _) = inputs(n, d, v, torch.float32, "shared")
    h, w, b = (t.requires_grad_() for t in (h, w, b))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    linear_soft_target_cross_entropy(h, w, y, eps, prior, bias=b).backward()
    torch.cuda.synchronize()
    extra = (torch.cuda.max_memory_allocated() - base) / (n * v * 4)
    # gradients 0.04 L, one logits buffer of at most N / 16 rows 0.0625 L
    assert extra < 0.12
