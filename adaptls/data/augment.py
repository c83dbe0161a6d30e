"""Batched image augmentation in torch, on whatever device the batch lives on."""

from __future__ import annotations

import torch
from torch import Tensor


def random_crop_flip(
    images: Tensor,
    padding: int = 4,
    fill: Tensor | float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random crop of the padded image, then a horizontal flip with probability 1/2.

    Per image, independently: the (C, H, W) image is padded by ``padding`` pixels on every
    side with ``fill`` (a number, or one value per channel, e.g. the normalised value of a
    black pixel, ``-mean / std``), an (H, W) window at a uniformly random offset in
    [0, 2 * padding]^2 is cut out, and it is mirrored left-right with probability 1/2:
    torchvision's ``RandomCrop(H, padding, fill)`` + ``RandomHorizontalFlip()`` on a batch.
    Randomness comes from ``generator``, or the global RNG of the batch's device (seeded by
    ``torch.manual_seed`` / Lightning's ``seed_everything``).
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    device = images.device
    height, width = h + 2 * padding, w + 2 * padding
    fill = torch.as_tensor(fill, dtype=images.dtype, device=device).expand(c)
    padded = fill.view(1, c, 1, 1).repeat(n, 1, height, width)
    padded[:, :, padding : padding + h, padding : padding + w] = images
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    rows = top + torch.arange(h, device=device)
    cols = left + torch.arange(w, device=device)
    # Mirroring the crop is reading its columns right to left.
    flip = torch.rand(n, 1, generator=generator, device=device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    # One flat gather per image (shared by its channels): faster than advanced indexing.
    index = rows.view(n, h, 1) * width + cols.view(n, 1, w)
    index = index.view(n, 1, h * w).expand(n, c, h * w)
    return padded.view(n, c, height * width).gather(2, index).view(n, c, h, w)
