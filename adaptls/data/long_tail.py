"""Long-tailed class profiles and per-class subsampling to them.

Class ``c`` (label order, 0 is the head) keeps ``n_c`` samples, ``IF = imbalance_ratio``:

- ``"exp"`` (the CIFAR-LT convention, Cui et al. 2019, Cao et al. 2019):
  ``n_c = floor(n_max * (1/IF) ** (c / (K - 1)))``, so ``n_0 = n_max`` and
  ``n_{K-1} = floor(n_max / IF)``;
- ``"step"`` (Cao et al. 2019, LDAM): the first ``K // 2`` classes keep ``n_max``, the other
  ``K - K // 2`` keep ``floor(n_max / IF)``.

``IF = 1`` gives a balanced profile.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adaptls.checks import check_choice, check_int, check_real

PROFILES = ("exp", "step")


def long_tail_counts(
    n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp"
) -> list[int]:
    """Samples per class of a long-tailed profile (see the module docstring).

    Raises if the rarest class would be left with no sample (``imbalance_ratio > n_max``).
    """
    n_max = check_int("n_max", n_max, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    ratio = check_real("imbalance_ratio", imbalance_ratio, minimum=1.0)
    profile = check_choice("imbalance_profile", profile, PROFILES)
    if math.floor(n_max / ratio) < 1:
        raise ValueError(
            f"imbalance_ratio={imbalance_ratio!r} leaves the rarest class with no sample "
            f"(n_max={n_max}); it must be <= {n_max}"
        )
    if profile == "step":
        tail = math.floor(n_max / ratio)
        return [n_max if c < num_classes // 2 else tail for c in range(num_classes)]
    # (1/IF) ** (c/(K-1)) rather than IF ** (-c/(K-1)): the same floating-point path as the
    # reference CIFAR-LT code, so the floors give the published per-class counts.
    return [
        math.floor(n_max * (1.0 / ratio) ** (c / (num_classes - 1))) for c in range(num_classes)
    ]


def long_tail_subsample(
    targets: Tensor, counts: list[int], generator: torch.Generator | None = None
) -> Tensor:
    """Indices (sorted, int64) of a random subset of ``targets`` with ``counts[c]`` of class c.

    Raises if a class has fewer samples than asked for.
    """
    if targets.dim() != 1:
        raise ValueError(f"targets must be 1-D, got shape {tuple(targets.shape)}")
    keep = []
    for c, n_c in enumerate(counts):
        members = (targets == c).nonzero().flatten()
        if n_c > len(members):
            raise ValueError(f"class {c} has {len(members)} samples, cannot keep {n_c}")
        keep.append(members[torch.randperm(len(members), generator=generator)[:n_c]])
    return torch.cat(keep).sort().values
