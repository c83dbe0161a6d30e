"""Fixtures shared by every test folder: a guard against host reads of tensor values, a
small text corpus through the real language-modelling pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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
