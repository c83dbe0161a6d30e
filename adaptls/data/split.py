"""Stratified, seeded hold-out split (validation from the training set)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def stratified_split(
    targets: Tensor, fraction: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Split sample indices into ``(kept, held_out)``, both sorted int64.

    Each class c with n_c samples gives ``round(fraction * n_c)`` (halves rounded up) random
    samples to ``held_out``, so the held-out set has the class proportions of ``targets``
    (balanced when ``targets`` is). The two parts are disjoint and cover every sample.
    """
    if targets.dim() != 1:
        raise ValueError(f"targets must be 1-D, got shape {tuple(targets.shape)}")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    kept, held = [], []
    for c in targets.unique().tolist():
        members = (targets == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = math.floor(fraction * len(members) + 0.5)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values
