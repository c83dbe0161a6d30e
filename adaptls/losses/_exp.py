"""The exponential of the fused kernels, in place.

e^z = 2^(z log2 e). On CPUs with AVX2 or AVX-512, torch's vectorised ``exp2`` is several
times faster than its ``exp`` (docs/performance.md), and the exponential is the costly
part of every pass of the fused losses, so there the kernels take 2^(z log2 e). Rounding
log2 e to the dtype and the product z log2 e once costs at most |z| units in the last
place of the result (relative): a few for the terms that weigh in a softmax (z > -20;
the others are below 2^-28 of the largest term, which is 1). Elsewhere (CUDA, CPUs
without those vector units, where ``exp2`` is the slower one) it is ``exp``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG2E = 1.0 / math.log(2.0)
# The capability torch dispatches CPU kernels to is fixed for the process (it reads
# ATEN_CPU_CAPABILITY at start-up).
_CPU_EXP2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def exp_(z: Tensor) -> Tensor:
    """``z.exp_()``, by the faster of exp and exp2 on the tensor's device."""
    if _CPU_EXP2 and z.is_cpu:
        return z.mul_(_LOG2E).exp2_()
    return z.exp_()
