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


@pytest.fixture(scope="session")
def sum_tol():
    """``sum_tol(n)``: assert_close tolerances for two computations of a metric that differ
    only in how float32 sums over n rows are ordered (chunking, ranks, CPU kernels).

    A float32 sum of n terms in any order is within (n - 1) u sum|x_i| of the exact value
    (Higham, recursive summation; u = 2^-24). The suite's figures are such sums divided by
    the row count (or differences of them, for ECE), with per-row terms of size <= 1
    (NLL's scale cancels in the relative bound), so two orderings agree to n u, relative
    and absolute: 1.2e-5 at 203 rows. Measured differences are far smaller (pairwise
    summation), but they depend on the CPU: a fixed 1e-6 failed on one vendor's CPU.
    """

    def tol(n: int) -> dict[str, float]:
        bound = max(int(n), 1) * 2.0**-24
        return {"rtol": bound, "atol": bound}

    return tol
