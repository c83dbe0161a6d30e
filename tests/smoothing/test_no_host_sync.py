"""The loss path makes no host read of tensor values (on a GPU, each one is a device sync).

Forward and backward of every stateless strategy's loss, and of the function with every
kind of epsilon and prior, run under a guard that fails on any operation that reads a
tensor's values on the host (the ``no_host_reads`` fixture of tests/conftest.py:
``.item()``, ``bool()``/``int()``/``float()`` of a tensor, ``nonzero``, boolean-mask
indexing, ``.tolist()`` and the like). The whole training step of the Lightning module is
checked the same way in tests/train/test_training_step_no_host_sync.py.
"""

from __future__ import annotations

import pytest
import torch

from adaptls.losses import checks
from adaptls.smoothing import (
    ClassFrequencySmoothing,
    ConfidenceSmoothing,
    FeedbackSmoothing,
    NoSmoothing,
    UniformSmoothing,
    soft_target_cross_entropy,
)
from adaptls.smoothing.driver import StrategyDriver

K = 10


def batch(n=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, K, generator=g).to(dtype)
    targets = torch.randint(0, K, (n,), generator=g)
    targets[::5] = -100
    return logits, targets


def strategies():
    counts = [100 // (c + 1) for c in range(K)]
    made = {
        "none": NoSmoothing(),
        "uniform": UniformSmoothing(0.1),
        "confidence max_prob": ConfidenceSmoothing(signal="max_prob"),
        "confidence target_prob": ConfidenceSmoothing(signal="target_prob"),
        "confidence entropy": ConfidenceSmoothing(signal="entropy"),
        "class_frequency": ClassFrequencySmoothing(),
        "feedback": FeedbackSmoothing(),
        "feedback per class": FeedbackSmoothing(per_class=True),
    }
    for strategy in made.values():
        strategy.setup(num_classes=K, class_counts=counts)
    return made


def test_the_guard_catches_host_reads(no_host_reads, host_read_error):
    t = torch.tensor([1.0, 0.0])
    for read in (
        lambda: t.sum().item(),
        lambda: bool(t.any()),
        lambda: float(t[0]),
        lambda: t[t > 0],
        lambda: t.nonzero(),
        lambda: t.tolist(),
        lambda: t.numpy(),
        lambda: torch.equal(t, t),
    ):
        with no_host_reads(), pytest.raises(host_read_error):
            read()


def test_debug_checks_are_where_the_host_reads_are(monkeypatch, no_host_reads, host_read_error):
    # DEBUG_CHECKS trades a host read per call for up-front errors
    logits, targets = batch()
    monkeypatch.setattr(checks, "DEBUG_CHECKS", True)
    with no_host_reads(), pytest.raises(host_read_error):
        soft_target_cross_entropy(logits, targets, 0.1)


@pytest.mark.parametrize("name", list(strategies()))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n", [24, 4096])  # tiny path, one whole pass
def test_strategy_loss_forward_and_backward_read_no_values(name, reduction, n, no_host_reads):
    strategy = strategies()[name]  # training mode: its bookkeeping runs too
    logits, targets = batch(n)
    x = logits.requires_grad_()
    with no_host_reads():
        loss = strategy(x, targets, reduction)
        loss.backward(torch.ones_like(loss))
        strategy.log_values()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "rows", "table"])
@pytest.mark.parametrize("eps_kind", ["zero", "float", "0-d", "rows"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [None, 64])  # default sizes; small chunks
def test_function_reads_no_values(
    prior_kind, eps_kind, dtype, chunk, no_host_reads, chunk_elements
):
    logits, targets = batch(64, seed=1, dtype=dtype)
    g = torch.Generator().manual_seed(2)
    table = torch.softmax(torch.randn(3, K, generator=g), -1)
    prior, prior_index = {
        "uniform": (None, None),
        "shared": (table[0], None),
        "rows": (table[targets.clamp(min=0) % 3], None),
        "table": (table, targets.clamp(min=0) % 3),
    }[prior_kind]
    eps = {
        "zero": 0.0,
        "float": 0.2,
        "0-d": torch.tensor(0.2),
        "rows": torch.rand(64, generator=g) * 0.3,
    }[eps_kind]
    for requires_grad in (True, False):
        x = logits.clone().requires_grad_(requires_grad)
        with chunk_elements(chunk), no_host_reads():
            loss = soft_target_cross_entropy(x, targets, eps, prior, prior_index=prior_index)
            if requires_grad:
                loss.backward(retain_graph=True)
                loss.backward()  # a second backward recomputes the gradient
        assert torch.isfinite(loss)


@pytest.mark.parametrize("name", list(strategies()))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_strategy_linear_loss_reads_no_values(name, reduction, no_host_reads):
    # the fused linear path: forward, backward (eager gradients, or recomputed for "none")
    strategy = strategies()[name]
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 40, 6, generator=g).requires_grad_()
    weight = torch.randn(K, 6, generator=g).requires_grad_()
    bias = torch.randn(K, generator=g).requires_grad_()
    targets = torch.randint(0, K, (2, 40), generator=g)
    targets[:, ::5] = -100
    with no_host_reads():
        loss = StrategyDriver(strategy).linear_loss(
            hidden, weight, targets, bias=bias, reduction=reduction
        )
        loss.backward(torch.ones_like(loss))
        strategy.log_values()
    assert torch.isfinite(weight.grad).all()


def test_linear_debug_checks_are_where_the_host_reads_are(
    monkeypatch, no_host_reads, host_read_error
):
    strategy = strategies()["uniform"]
    hidden, weight = torch.randn(8, 3), torch.randn(K, 3)
    targets = torch.arange(8)
    monkeypatch.setattr(checks, "DEBUG_CHECKS", True)
    with no_host_reads(), pytest.raises(host_read_error):
        StrategyDriver(strategy).linear_loss(hidden, weight, targets)
