"""Fixtures shared by every test folder: a guard against host reads of tensor values, a
small text corpus through the real language-modelling pipeline, and an independent dense
reference of the soft-target loss (the losses, smoothing and peers tests use it). The
session names the CPU kernels it runs on and refuses others than ATEN_CPU_CAPABILITY asks for.

Handed to tests as session fixtures (test files cannot import a conftest by name under
``--import-mode=importlib``; session scope keeps them usable inside hypothesis tests).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import tempfile
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from adaptls.losses import _fused, _fused_linear

# ATEN_CPU_CAPABILITY picks ATen's CPU kernels (scripts/test_capabilities.py).
ASKED_CAPABILITY = os.environ.get("ATEN_CPU_CAPABILITY")
if ASKED_CAPABILITY:
    # Inductor's on-disk cache is not keyed by the capability: code generated under one and
    # served from the cache under another crashed (AVX-512, then AVX2: a segfault) or failed
    # to build (then default: at::vec undeclared). One cache per capability; a
    # TORCHINDUCTOR_CACHE_DIR set by the caller is kept.
    try:
        _user = getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        _user = str(os.getuid())
    os.environ.setdefault(
        "TORCHINDUCTOR_CACHE_DIR",
        os.path.join(tempfile.gettempdir(), f"torchinductor_{_user}_{ASKED_CAPABILITY}"),
    )


def pytest_configure(config: pytest.Config) -> None:
    # torch ignores a value it does not know (with a warning) and cannot raise the capability
    # above the CPU's: such a session would test other kernels than the ones asked for.
    running = torch.backends.cpu.get_cpu_capability()
    if ASKED_CAPABILITY and running.lower() != ASKED_CAPABILITY:
        raise pytest.UsageError(
            f"ATEN_CPU_CAPABILITY={ASKED_CAPABILITY!r}, but torch runs {running} kernels: "
            "use 'default', 'avx2' or 'avx512' (lower-case), at most the CPU's own"
        )


def pytest_report_header(config: pytest.Config) -> str:
    running = torch.backends.cpu.get_cpu_capability()
    if not ASKED_CAPABILITY:
        return f"cpu capability: {running} (ATEN_CPU_CAPABILITY unset: the CPU's own)"
    cache = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    return (
        f"cpu capability: {running} (ATEN_CPU_CAPABILITY={ASKED_CAPABILITY}; "
        f"inductor cache {cache})"
    )


aten = torch.ops.aten
# Operations that read a tensor's values on the host (on a GPU, each one is a device sync).
HOST_READS = {
    aten._local_scalar_dense,  # .item(), bool(t), int(t), float(t)
    aten.is_nonzero,
    aten.item,
    aten.nonzero,  # and boolean-mask indexing, which calls it
    aten.nonzero_static,
    aten.masked_select,
    aten.equal,
    aten.allclose,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
}
# indexing with a boolean mask reads the mask (its nonzero is taken inside the kernel)
MASK_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class HostReadError(AssertionError):
    """A host read of tensor values where none may happen."""


class _NoHostReads(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in HOST_READS or (
            func.overloadpacket in MASK_INDEXING
            and any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])
        ):
            raise HostReadError(f"host read of tensor values: {func}")
        return func(*args, **(kwargs or {}))


def _refuse(name: str) -> Callable[..., None]:
    def method(*args: object, **kwargs: object) -> None:
        raise HostReadError(f"host read of tensor values: Tensor.{name}")

    return method


@contextlib.contextmanager
def _no_host_reads() -> Iterator[None]:
    """Fail on any host read of tensor values: ``.item()``, ``bool()``/``int()``/``float()``
    of a tensor, ``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``,
    ``torch.equal``, ``.tolist()``, ``.numpy()`` (the last two are not dispatched: they
    are refused on the class). A ``.cpu()`` copy is no read on a CPU tensor: not caught."""
    with pytest.MonkeyPatch.context() as m:
        for name in ("tolist", "numpy", "__array__"):
            m.setattr(torch.Tensor, name, _refuse(name))
        with _NoHostReads():
            yield


@pytest.fixture(scope="session")
def no_host_reads() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``with no_host_reads(): ...`` fails (HostReadError) on any host read of tensor values."""
    return _no_host_reads


@pytest.fixture(scope="session")
def host_read_error() -> type[AssertionError]:
    return HostReadError


@pytest.fixture(scope="session")
def tiny_text() -> type:
    """``tiny_text(**options)``: :class:`~adaptls.data.TextLMDataModule` (the real pipeline:
    document split, BPE tokenizer, next-token blocks) on the first 12 pydoc topics only, 8
    for training, 2 for validation, 2 for test: a few thousand tokens, seconds to set up."""
    # Imported here: the tests that do not need text data do not pay for these imports.
    from adaptls.data import TextLMDataModule
    from adaptls.data.corpora import pydoc_topics

    class TinyText(TextLMDataModule):
        def documents(self) -> dict[str, list[str]]:
            docs = list(pydoc_topics().values())[:12]
            return {"train": docs[:8], "val": docs[8:10], "test": docs[10:]}

    return TinyText


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
