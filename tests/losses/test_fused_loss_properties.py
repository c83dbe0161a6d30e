"""Property tests: the fused loss equals the dense reference -(t * log_softmax(x)).sum(-1).

Random leading shapes (0 to 3 dims, empty included), K from 2 to 2000, every kind of
epsilon (float, 0-d tensor, one per row) and prior (uniform, shared (K,), per-row, table
rows picked by prior_index), ignored rows, every reduction, and chunk sizes from one row
per chunk up, so chunk boundaries fall everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.smoothing import dense_soft_targets, soft_target_cross_entropy

IGNORE = -100
SETTINGS = settings(max_examples=60, deadline=None)


@dataclass
class Problem:
    logits: torch.Tensor
    targets: torch.Tensor
    epsilon: float | torch.Tensor
    prior: torch.Tensor | None
    prior_index: torch.Tensor | None
    chunk: int | None

    @property
    def k(self) -> int:
        return self.logits.shape[-1]

    def kwargs(self) -> dict:
        return {"prior_index": self.prior_index, "ignore_index": IGNORE}


@st.composite
def problems(draw, dtype=torch.float64) -> Problem:
    lead = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    k = draw(st.one_of(st.integers(2, 12), st.integers(13, 2000)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.floats(0.1, 20.0))
    logits = (torch.randn(*lead, k, generator=g, dtype=torch.float64) * scale).to(dtype)
    targets = torch.randint(0, k, lead, generator=g)
    ignored = torch.rand(lead, generator=g) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    targets[ignored] = IGNORE

    eps_kind = draw(st.sampled_from(["float", "0-d", "rows"]))
    if eps_kind == "float":
        epsilon = draw(st.floats(0.0, 1.0))
    elif eps_kind == "0-d":
        epsilon = torch.tensor(draw(st.floats(0.0, 1.0)), dtype=dtype)
    else:
        epsilon = torch.rand(lead, generator=g, dtype=torch.float64).to(dtype)

    prior_kind = draw(st.sampled_from(["uniform", "shared", "rows", "rows (N, K)", "table"]))
    prior = prior_index = None
    n = math.prod(lead)
    if prior_kind == "shared":
        prior = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    elif prior_kind == "rows":
        prior = torch.softmax(torch.randn(*lead, k, generator=g, dtype=torch.float64), -1)
    elif prior_kind == "rows (N, K)":
        prior = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), -1)
    elif prior_kind == "table":
        m = draw(st.integers(1, 6))
        prior = torch.softmax(torch.randn(m, k, generator=g, dtype=torch.float64), -1)
        prior_index = torch.randint(0, m, lead, generator=g)
    if prior is not None:
        prior = prior.to(draw(st.sampled_from([dtype, torch.float64])))
    chunk = draw(st.sampled_from([None, 1, 7, 300]))
    return Problem(logits, targets, epsilon, prior, prior_index, chunk)


def fused(p: Problem, reduction: str, chunk_elements) -> tuple[torch.Tensor, torch.Tensor]:
    x = p.logits.detach().clone().requires_grad_()
    with chunk_elements(p.chunk):
        loss = soft_target_cross_entropy(
            x, p.targets, p.epsilon, p.prior, reduction=reduction, **p.kwargs()
        )
        weight = torch.linspace(-2.0, 3.0, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
        (loss * weight).sum().backward()
    return loss.detach(), x.grad


def reference(p: Problem, reduction: str, reference_loss) -> tuple[torch.Tensor, torch.Tensor]:
    x = p.logits.detach().double().requires_grad_()
    loss = reference_loss(x, p.targets, p.epsilon, p.prior, p.prior_index, IGNORE, reduction)
    weight = torch.linspace(-2.0, 3.0, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (loss * weight).sum().backward()
    return loss.detach(), x.grad


@SETTINGS
@given(p=problems())
def test_soft_targets_are_distributions(p: Problem, reference_soft_targets):
    t = dense_soft_targets(p.targets, p.k, p.epsilon, p.prior, dtype=torch.float64, **p.kwargs())
    ref = reference_soft_targets(p.targets, p.k, p.epsilon, p.prior, p.prior_index, IGNORE)
    torch.testing.assert_close(t, ref, rtol=0, atol=1e-12)
    counted = p.targets.reshape(-1) != IGNORE
    assert (t >= 0).all()
    torch.testing.assert_close(t[counted].sum(-1), torch.ones(int(counted.sum()), dtype=t.dtype))
    assert (t[~counted] == 0).all()


@SETTINGS
@given(p=problems(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_float64_loss_and_gradient_equal_the_dense_reference(
    p: Problem, reduction, reference_loss, chunk_elements
):
    loss, grad = fused(p, reduction, chunk_elements)
    ref_loss, ref_grad = reference(p, reduction, reference_loss)
    assert loss.shape == ref_loss.shape == (p.targets.shape if reduction == "none" else ())
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(p=problems(dtype=torch.float32), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_float32_loss_and_gradient_match_the_float64_reference(
    p: Problem, reduction, reference_loss, chunk_elements
):
    loss, grad = fused(p, reduction, chunk_elements)
    ref_loss, ref_grad = reference(p, reduction, reference_loss)
    assert loss.dtype == grad.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)
