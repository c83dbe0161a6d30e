"""ConfidenceSmoothing through the fused linear path: the signal from the kernel's per-row
statistics (log-sum-exp, target logit, entropy of the chunk in hand), not a second softmax.

- float64 at a vocabulary-like V against the definition written out (eps from a float64
  softmax of the full logits, then the soft-target loss): agreement to float64 rounding;
- float32 against the unfused ``ConfidenceSmoothing`` on the full logits;
- the recomputing backward (``"none"``, a second backward) reuses the decided epsilons;
- no softmax op runs and nothing larger than one chunk of rows x V is allocated.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import ConfidenceSmoothing, soft_target_cross_entropy
from adaptls.smoothing.driver import StrategyDriver

SIGNALS = ("max_prob", "target_prob", "entropy")
TOL64 = {"atol": 1e-11, "rtol": 1e-9}


def batch(n=90, d=16, v=3000, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=dtype)
    weight = torch.randn(v, d, generator=g, dtype=dtype) * 0.7
    bias = torch.randn(v, generator=g, dtype=dtype)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::7] = -100
    return hidden, weight, bias, targets


def make(signal, v, **kw):
    s = ConfidenceSmoothing(epsilon_min=0.05, epsilon_max=0.4, signal=signal, power=1.5, **kw)
    s.setup(num_classes=v)
    return s


def definition_epsilon(logits, targets, signal, e_min=0.05, e_max=0.4, power=1.5):
    """The class docstring's formula, on the full float64 logits."""
    p = torch.softmax(logits.double(), -1)
    if signal == "max_prob":
        c = p.amax(-1)
    elif signal == "target_prob":
        c = p.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
    else:
        c = 1 + (p * p.log()).sum(-1) / math.log(p.shape[-1])
    return e_min + (e_max - e_min) * c.clamp(0, 1).pow(power)


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_float64_matches_the_definition(signal, reduction, chunk_rows):
    hidden, weight, bias, targets = batch()
    strategy = make(signal, weight.shape[0])
    got = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    want = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    with chunk_rows(25):  # 90 rows: the last chunk is short
        loss = StrategyDriver(strategy).linear_loss(
            got[0], got[1], targets, bias=got[2], reduction=reduction
        )
    logits = F.linear(*want)
    eps = definition_epsilon(logits.detach(), targets, signal)
    ref = soft_target_cross_entropy(logits, targets, eps, reduction=reduction)
    torch.testing.assert_close(loss, ref, **TOL64)
    g = torch.rand(loss.shape, generator=torch.Generator().manual_seed(1), dtype=loss.dtype)
    loss.backward(g)
    ref.backward(g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **TOL64)
    # the figures it logs are the batch's epsilons
    counted = targets != -100
    torch.testing.assert_close(strategy._last_epsilon[counted], eps[counted], **TOL64)


@pytest.mark.parametrize("signal", SIGNALS)
def test_float32_agrees_with_the_unfused_strategy(signal):
    # Both accumulate in float32; sums over V = 3000 terms in different orders differ by
    # at most ~V u relative (u = 2^-24: 1.8e-4), typically ~sqrt(V) u; 2e-5 sits between.
    hidden, weight, bias, targets = batch(dtype=torch.float32, seed=2)
    v = weight.shape[0]
    fused, unfused = make(signal, v), make(signal, v)
    got = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    want = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    loss = StrategyDriver(fused).linear_loss(got[0], got[1], targets, bias=got[2])
    ref = unfused(F.linear(*want), targets)
    torch.testing.assert_close(loss, ref, rtol=2e-5, atol=0)
    loss.backward()
    ref.backward()
    for a, b in zip(got, want, strict=True):
        scale = b.grad.abs().max()
        torch.testing.assert_close(a.grad / scale, b.grad / scale, rtol=0, atol=2e-5)
    for key, value in unfused.log_values().items():
        torch.testing.assert_close(fused.log_values()[key], value, rtol=2e-5, atol=0)
    # The record is float64 but sums the float32 per-row epsilons: their relative error (the
    # bound above, as for the logged figures), not float64's default rtol 1e-7, bounds the
    # sum's (a sum of positive terms is off by at most its terms' largest relative error).
    torch.testing.assert_close(
        fused.applied_epsilon_epoch, unfused.applied_epsilon_epoch, rtol=2e-5, atol=0
    )


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_second_backward_reuses_the_decided_epsilons(signal, chunk_rows):
    hidden, weight, bias, targets = batch(n=40, v=500)
    h = hidden.clone().requires_grad_()
    strategy = make(signal, 500, schedule={"name": "cosine"})
    StrategyDriver(strategy).set_epoch(1, max_epochs=3)
    with chunk_rows(16):
        loss = StrategyDriver(strategy).linear_loss(h, weight, targets, bias=bias)
        loss.backward(retain_graph=True)
        first = h.grad.clone()
        h.grad = None
        loss.backward()  # recomputes the chunks from the saved inputs and epsilons
    torch.testing.assert_close(h.grad, first, **TOL64)


@pytest.mark.parametrize("signal", SIGNALS)
def test_no_second_softmax_and_no_logits(signal, allocations):
    n, v = 1024, 1000
    hidden, weight, bias, targets = batch(n=n, v=v, dtype=torch.float32)
    strategy = make(signal, v)
    w = weight.requires_grad_()
    with allocations() as ops:
        StrategyDriver(strategy).linear_loss(hidden, w, targets, bias=bias).backward()
    assert not {"_softmax", "_log_softmax", "softmax", "log_softmax"} & ops.names
    assert ops.largest <= n * v // 16  # one chunk: at most ceil(N / 16) rows of V
