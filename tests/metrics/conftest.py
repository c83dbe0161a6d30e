"""Metric tests run on tiny tensors: one intra-op thread is faster for them, and keeps
their timing steady when other processes share the cores."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
