"""Gradients of the fused loss: float64 gradcheck, edge cases, dtypes, what gets a gradient."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from adaptls.losses import _fused, soft_target_cross_entropy

N, K, M = 7, 5, 3
REDUCTIONS = ("mean", "sum", "none")


def inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(N, K, generator=g, dtype=torch.float64) * 2).to(dtype)
    targets = torch.randint(0, K, (N,), generator=g)
    targets[[1, 4]] = -100
    table = torch.softmax(torch.randn(M, K, generator=g, dtype=torch.float64), -1)
    index = torch.randint(0, M, (N,), generator=g)
    return logits, targets, table, index


def prior_kinds(table, index):
    return {
        "uniform": (None, None),
        "shared": (table[0], None),
        "rows": (table[index], None),
        "table": (table, index),
    }


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "rows", "table"])
@pytest.mark.parametrize("eps_kind", ["float", "rows"])
@pytest.mark.parametrize("chunk", [None, 2 * K])
def test_gradcheck_float64(reduction, prior_kind, eps_kind, chunk, chunk_elements):
    logits, targets, table, index = inputs()
    prior, prior_index = prior_kinds(table, index)[prior_kind]
    eps = 0.3 if eps_kind == "float" else torch.linspace(0.0, 0.9, N, dtype=torch.float64)
    x = logits.requires_grad_()

    def loss(x):
        return soft_target_cross_entropy(
            x, targets, eps, prior, prior_index=prior_index, reduction=reduction
        )

    with chunk_elements(chunk):
        assert gradcheck(loss, (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_rows_ignored_give_zero_loss_and_zero_gradient(reduction):
    logits, _, table, index = inputs(torch.float32)
    targets = torch.full((N,), -100)
    for prior, prior_index in prior_kinds(table.float(), index).values():
        x = logits.clone().requires_grad_()
        loss = soft_target_cross_entropy(
            x, targets, 0.2, prior, prior_index=prior_index, reduction=reduction
        )
        loss.sum().backward()
        assert torch.equal(loss, torch.zeros_like(loss))
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_empty_input_gives_zero_loss():
    for reduction in REDUCTIONS:
        x = torch.zeros(0, 3, K, requires_grad=True)
        targets = torch.zeros(0, 3, dtype=torch.long)
        loss = soft_target_cross_entropy(x, targets, 0.1, reduction=reduction)
        loss.sum().backward()
        assert loss.shape == (targets.shape if reduction == "none" else ())
        assert loss.sum().item() == 0.0 and x.grad.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("prior_kind", ["uniform", "table"])
def test_half_precision_logits_accumulate_in_float32(dtype, prior_kind, reference_loss):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(64, 100, generator=g) * 4).to(dtype)
    targets = torch.randint(0, 100, (64,), generator=g)
    targets[:5] = -100
    table = torch.softmax(torch.randn(10, 100, generator=g), -1)
    prior, index = (None, None) if prior_kind == "uniform" else (table, targets.clamp(0) % 10)
    x = logits.clone().requires_grad_()
    loss = soft_target_cross_entropy(x, targets, 0.2, prior, prior_index=index)
    # a large loss scale, as fp16 mixed precision uses: applied before rounding to fp16
    (loss * 4096.0).backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == dtype
    r = logits.double().requires_grad_()
    ref = reference_loss(r, targets, 0.2, prior, index)
    (ref * 4096.0).backward()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=1e-6)
    rounding = 2.0**-8 if dtype == torch.float16 else 2.0**-5
    torch.testing.assert_close(
        x.grad.double(), r.grad, rtol=rounding, atol=rounding * r.grad.abs().max().item()
    )


def test_no_gradient_reaches_epsilon_or_prior():
    logits, targets, table, index = inputs(torch.float32)
    x = logits.requires_grad_()
    eps = torch.full((N,), 0.2, requires_grad=True)
    prior = table.float().requires_grad_()
    loss = soft_target_cross_entropy(x, targets, eps, prior, prior_index=index)
    loss.backward()
    assert x.grad is not None
    assert eps.grad is None and prior.grad is None


def test_needs_no_gradient_when_the_logits_do_not():
    logits, targets, table, _ = inputs(torch.float32)
    prior = table[0].float().requires_grad_()
    assert not soft_target_cross_entropy(logits, targets, 0.1, prior).requires_grad
    with torch.no_grad():
        assert not soft_target_cross_entropy(logits.requires_grad_(), targets, 0.1).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_twice_with_retain_graph_gives_the_same_gradients(dtype):
    logits, targets, table, index = inputs(dtype)
    x = logits.requires_grad_()
    loss = soft_target_cross_entropy(x, targets, 0.4, table.float(), prior_index=index)
    (first,) = torch.autograd.grad(loss * 3.0, x, retain_graph=True)  # scales in place
    (second,) = torch.autograd.grad(loss * 3.0, x, retain_graph=True)  # recomputes
    (third,) = torch.autograd.grad(loss, x)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, third * 3.0)


def test_gradient_of_a_scaled_loss_is_scaled():
    logits, targets, _, _ = inputs(torch.float32)
    grads = []
    for factor in (1.0, -0.5):
        x = logits.clone().requires_grad_()
        (soft_target_cross_entropy(x, targets, 0.1) * factor).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0] * -0.5)


# chunk sizes (elements) for the ``chunk_elements`` fixture that put these N x K = 35
# inputs on the custom Function rather than the tiny path (<= that many elements): one
# pass (chunks of rows where a pass needs a buffer: per-row priors), or chunks of one row
# per intra-op thread
FUNCTION_CHUNKS = (N * K - 1, K)


@pytest.fixture
def one_thread():
    """One intra-op thread: where the fused loss takes chunks of rows for every pass (with
    more threads it takes them only where a pass needs a buffer)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2])
def test_chunk_sizes(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    cpu, elements = torch.device("cpu"), _fused._CHUNK_ELEMENTS
    for n, k in ((1024, 10), (4096, 100), (1024, 1000), (8192, 1000), (1024, 32000)):
        whole = _fused._chunk_rows(n, k, cpu, False, False)
        buffered = _fused._chunk_rows(n, k, cpu, True, False)
        assert _fused._chunk_rows(n, k, cpu, False, True) == buffered
        if threads == 1 and n * k > _fused._WHOLE_CHUNKS * elements:
            assert whole == elements // k  # cache-sized chunks
        else:
            assert whole == n  # one pass
        # a buffer of at most a 16th of the logits (or 256 KiB), <= 16 chunks with threads
        assert buffered * k <= max(n * k // 16, elements // 4)
        assert threads == 1 or -(-n // buffered) <= 16


@pytest.mark.parametrize("chunk", FUNCTION_CHUNKS)
@pytest.mark.parametrize("prior_kind", ["uniform", "table"])
def test_double_backward_is_refused(chunk, prior_kind, chunk_elements, one_thread):
    # the custom Function (not tiny problems: see the next test) is differentiable once
    logits, targets, table, index = inputs()
    prior, prior_index = prior_kinds(table, index)[prior_kind]
    x = logits.requires_grad_()
    weight = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    with chunk_elements(chunk):
        loss = soft_target_cross_entropy(x, targets, 0.1, prior, prior_index=prior_index)
        (grad,) = torch.autograd.grad(loss * weight, x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "rows", "table"])
def test_tiny_problems_are_differentiable_twice(prior_kind):
    # tiny problems run as plain differentiable operations (a dense soft target), whose
    # second derivative autograd provides
    logits, targets, table, index = inputs()
    prior, prior_index = prior_kinds(table, index)[prior_kind]
    assert logits.numel() <= _fused._tiny_elements(logits.device)

    def loss(x):
        return soft_target_cross_entropy(x, targets, 0.3, prior, prior_index=prior_index)

    assert gradgradcheck(loss, (logits.requires_grad_(),))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("prior_kind", ["uniform", "shared", "rows", "table"])
@pytest.mark.parametrize("eps_kind", ["zero", "float", "rows"])
def test_tiny_whole_and_chunked_paths_agree(
    reduction, prior_kind, eps_kind, chunk_elements, one_thread
):
    """The eager ways (dense target, one pass, chunks) give the same loss and gradient."""
    logits, targets, table, index = inputs(torch.float32, seed=3)
    prior, prior_index = prior_kinds(table.float(), index)[prior_kind]
    eps = {"zero": 0.0, "float": 0.3, "rows": torch.linspace(0.0, 0.9, N)}[eps_kind]
    prior_rows = prior is not None and prior.dim() == 2 and eps_kind != "zero"
    results = []
    for chunk in (None, *FUNCTION_CHUNKS):
        x = logits.clone().requires_grad_()
        with chunk_elements(chunk):
            assert (x.numel() <= _fused._tiny_elements(x.device)) == (chunk is None)
            rows = _fused._chunk_rows(N, K, x.device, prior_rows, False)
            if chunk == K:
                assert rows < N  # chunks of rows
            elif not prior_rows:
                assert rows == N  # one pass
            loss = soft_target_cross_entropy(
                x, targets, eps, prior, prior_index=prior_index, reduction=reduction
            )
            loss.backward(torch.linspace(0.5, 2.0, loss.numel()).reshape(loss.shape))
        results.append((loss.detach(), x.grad))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("prior_kind", ["uniform", "table"])
def test_gradient_is_taken_as_the_logits_grad_without_a_copy(
    prior_kind, chunk_elements, one_thread
):
    logits, targets, table, index = inputs(torch.float32)
    prior, prior_index = prior_kinds(table.float(), index)[prior_kind]
    for chunk in FUNCTION_CHUNKS:  # the custom Function: one pass, or chunks
        x = logits.clone().requires_grad_()
        seen = []
        with chunk_elements(chunk):
            loss = soft_target_cross_entropy(x, targets, 0.1, prior, prior_index=prior_index)
        loss.grad_fn.register_hook(
            lambda grad_inputs, _, seen=seen: seen.append(grad_inputs[0].data_ptr())
        )
        loss.backward()
        assert seen == [x.grad.data_ptr()]
