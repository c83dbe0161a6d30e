"""Shared helpers for the smoothing tests: an independent dense reference of the loss.

Handed to tests as session fixtures (test files cannot import this module by name under
``--import-mode=importlib``; session scope keeps them usable inside hypothesis tests).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from adaptls.smoothing import _fused, _fused_linear


def _reference_soft_targets(targets, k, epsilon, prior=None, prior_index=None, ignore_index=-100):
    """t = (1 - eps) onehot(y) + eps u, built the obvious way (float64), zero rows where
    ignored. Independent of the library's own ``dense_soft_targets``."""
    y = targets.reshape(-1)
    n = y.numel()
    eps = torch.as_tensor(epsilon, dtype=torch.float64).reshape(-1).expand(n)
    if prior is None:
        u = torch.full((n, k), 1.0 / k, dtype=torch.float64)
    elif prior_index is not None:
        u = prior.double()[prior_index.reshape(-1)]
    elif prior.dim() == 1:
        u = prior.double().expand(n, k)
    else:
        u = prior.double().reshape(n, k)
    keep = y != ignore_index
    onehot = F.one_hot(torch.where(keep, y, 0), k).double()
    t = (1 - eps)[:, None] * onehot + eps[:, None] * u
    return t * keep[:, None]


def _reference_loss(
    logits, targets, epsilon, prior=None, prior_index=None, ignore_index=-100, reduction="mean"
):
    """-(t * log_softmax(logits)).sum(-1) with the matching reduction, differentiable."""
    k = logits.shape[-1]
    t = _reference_soft_targets(targets, k, epsilon, prior, prior_index, ignore_index)
    rows = -(t.to(logits.dtype) * torch.log_softmax(logits.reshape(-1, k), -1)).sum(-1)
    if reduction == "none":
        return rows.reshape(targets.shape)
    if reduction == "sum":
        return rows.sum()
    counted = (targets != ignore_index).sum().clamp(min=1)
    return rows.sum() / counted


@contextlib.contextmanager
def _chunk_elements(elements: int | None):
    """Run the fused loss with chunks of about ``elements`` elements (None: the default),
    so tiny inputs cross chunk boundaries too."""
    saved = _fused._CHUNK_ELEMENTS, _fused._MIN_CHUNK_ELEMENTS
    if elements is not None:
        _fused._CHUNK_ELEMENTS = _fused._MIN_CHUNK_ELEMENTS = elements
    try:
        yield
    finally:
        _fused._CHUNK_ELEMENTS, _fused._MIN_CHUNK_ELEMENTS = saved


@contextlib.contextmanager
def _linear_chunk_rows(rows: int | None):
    """Run the fused linear loss with ``rows`` rows per chunk (None: the library's rule)."""
    saved = _fused_linear._CHUNK_ROWS
    _fused_linear._CHUNK_ROWS = rows
    try:
        yield
    finally:
        _fused_linear._CHUNK_ROWS = saved


class _Allocations(TorchDispatchMode):
    """Records every aten op's name and the largest tensor any op returns (views
    included): ``with allocations() as seen: ...``, then ``seen.names``, ``seen.largest``."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if torch.is_tensor(t):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.fixture(scope="session")
def chunk_rows():
    return _linear_chunk_rows


@pytest.fixture(scope="session")
def allocations():
    return _Allocations


@pytest.fixture(scope="session")
def reference_soft_targets():
    return _reference_soft_targets


@pytest.fixture(scope="session")
def reference_loss():
    return _reference_loss


@pytest.fixture(scope="session")
def chunk_elements():
    return _chunk_elements


@pytest.fixture
def cifar10_lt_counts() -> list[int]:
    """CIFAR-10-LT imbalance factor 100: n_c = int(5000 * 0.01 ** (c / 9))."""
    return [int(5000 * 0.01 ** (c / 9)) for c in range(10)]
