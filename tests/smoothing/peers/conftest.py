"""Shared helpers of the calibration-loss tests: batches and the value + gradient check
against a port of the authors' formula.

Handed to tests as session fixtures (test files cannot import this module by name under
``--import-mode=importlib``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

IGNORE = -100


def _batch(
    k: int,
    n: int = 24,
    *,
    scale: float = 3.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    ignored: tuple[int, ...] = (1, 5),
) -> tuple[Tensor, Tensor]:
    """(n, k) logits ~ scale * N(0, 1) and (n,) targets, rows ``ignored`` set to -100."""
    g = torch.Generator().manual_seed(1000 * seed + k)
    x = (torch.randn(n, k, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, k, (n,), generator=g)
    y[list(ignored)] = IGNORE
    return x, y


def _value_and_grad(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor):
    leaf = x.detach().clone().requires_grad_()
    value = fn(leaf, y)
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad


def _check_against(
    ours: Callable[[Tensor, Tensor], Tensor],
    reference: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    rtol: float,
    atol: float,
) -> None:
    """Values and gradients (torch.autograd.grad) of ``ours`` and ``reference`` agree;
    both are finite. ``reference`` gets the same (detached) logits, in float64."""
    value, grad = _value_and_grad(ours, x, y)
    ref_value, ref_grad = _value_and_grad(reference, x.double(), y)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert torch.isfinite(ref_value).all() and torch.isfinite(ref_grad).all()
    torch.testing.assert_close(value.double(), ref_value, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=rtol, atol=atol)
    assert (grad[y == IGNORE] == 0).all()  # ignored rows get no gradient


def _kept(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The rows the references see: the authors drop ignored rows before anything else."""
    keep = y != IGNORE
    return x[keep], y[keep]


@pytest.fixture(scope="session")
def batch():
    return _batch


@pytest.fixture(scope="session")
def check_against():
    return _check_against


@pytest.fixture(scope="session")
def kept():
    return _kept
