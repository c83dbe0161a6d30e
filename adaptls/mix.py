"""Mixing augmentations (mixup, cutmix) as pure-torch batch transforms. No Lightning.

A mixer takes a training batch ``x`` (B, C, ...) with labels ``y`` (B,) and returns a
:class:`Mixed` batch: the mixed inputs, the labels of the two constituents ``y_a = y``
and ``y_b = y[perm]``, ``perm`` (to find the partner's sample index) and one ``lam`` for
the whole batch, so that sample i is (mostly) ``lam * x_i + (1 - lam) * x_perm[i]``.

The labels are *not* mixed here. A strategy scores a mixed sample against
``lam * t(y_a) + (1 - lam) * t(y_b)``, t being the strategy's own soft target
(:meth:`adaptls.smoothing.StrategyDriver.mixed_loss`), so smoothing is applied once.
Mixing a one-hot label here and smoothing it again in the loss is the double smoothing
torchvision refused to build into its MixUp/CutMix (torchvision issue 4907).

Conventions (those of the mixup and CutMix papers' code and torchvision's v2 transforms):

- lam ~ Beta(alpha, alpha), one value per batch;
- the partner of sample i is ``perm[i]`` for a random permutation (the papers' code;
  torchvision pairs each sample with its neighbour, ``roll(1)``);
- cutmix pastes a box (images (B, C, H, W)) or a segment (series (B, C, L)) of the
  partner whose side is ``sqrt(1 - lam)`` (images) or ``1 - lam`` (series) of the input's,
  centred uniformly at random and clipped at the border, and then *replaces lam by the
  fraction of the input that was kept*, ``1 - box area / input area``, as torchvision's
  ``CutMix`` and the CutMix paper's ``rand_bbox`` code do;
- ``probability``: each batch is mixed with this probability, else passed through with
  lam = 1 (timm's ``prob``).

Randomness comes from torch's global generator (seeded by the run), on the CPU, so a
fixed seed gives the same mix on any device and lam is a Python float with no device sync.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from adaptls.checks import check_positive, check_probability


class Mixed(NamedTuple):
    """A mixed batch: inputs, both constituents' labels, the partner permutation, lam."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    perm: Tensor | None  # None when the batch is not mixed (lam = 1, y_b = y_a)
    lam: float

    def partner(self, values: Tensor | None) -> Tensor | None:
        """Per-sample values (e.g. sample indices) of each row's partner, ``values[perm]``."""
        if values is None or self.perm is None:
            return values
        return values[self.perm.to(values.device)]


class NoMix:
    """The identity: every batch passes through unmixed (lam = 1)."""

    def __call__(self, x: Tensor, y: Tensor) -> Mixed:
        return Mixed(x, y, y, None, 1.0)

    def check_input_shape(self, input_shape: tuple[int, ...], *, token_ids: bool = False) -> None:
        """Any input layout can pass through."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _BetaMix:
    """What mixup and cutmix share: alpha and probability, lam ~ Beta(alpha, alpha)."""

    def __init__(self, alpha: float = 1.0, probability: float = 1.0) -> None:
        self.alpha = check_positive("alpha", alpha)
        self.probability = check_probability("probability", probability)
        self._beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))

    def __call__(self, x: Tensor, y: Tensor) -> Mixed:
        if x.dim() < 2 or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{type(self).__name__} needs inputs (B, C, ...) and labels (B,), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        # With probability 1 no draw is spent on the coin (the stream matches torchvision's).
        if self.probability < 1.0 and float(torch.rand(())) >= self.probability:
            return Mixed(x, y, y, None, 1.0)
        lam = float(self._beta.sample(()))
        mixed, lam, perm = self._mix(x, lam)
        return Mixed(mixed, y, y[perm.to(y.device)], perm, lam)

    def _mix(self, x: Tensor, lam: float) -> tuple[Tensor, float, Tensor]:
        raise NotImplementedError

    def check_input_shape(self, input_shape: tuple[int, ...], *, token_ids: bool = False) -> None:
        """Raise a ValueError if samples of this shape (without the batch axis) cannot be
        mixed, or if they are token ids (``token_ids``): called before training, so a wrong
        pairing fails at start."""
        if token_ids:
            raise ValueError(
                f"{type(self).__name__} mixes float inputs (features, series, images); this "
                "data yields token ids, which do not mix (use mix=none)"
            )
        if not input_shape:
            raise ValueError(f"{type(self).__name__} needs inputs with features, got shape ()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, probability={self.probability})"


class MixUp(_BetaMix):
    """mixup (Zhang et al., ICLR 2018): ``x = lam * x + (1 - lam) * x[perm]``, any layout."""

    def _mix(self, x: Tensor, lam: float) -> tuple[Tensor, float, Tensor]:
        perm = torch.randperm(x.shape[0]).to(x.device)
        return x * lam + x[perm] * (1.0 - lam), lam, perm


class CutMix(_BetaMix):
    """CutMix (Yun et al., ICCV 2019) for images (B, C, H, W) and series (B, C, L).

    Box (images): half-sides ``int(0.5 * sqrt(1 - lam) * W)`` and ``... * H`` around a
    uniformly drawn centre, clipped; segment (series): half-length ``int(0.5 * (1 - lam)
    * L)``. torchvision's ``v2.CutMix._get_params`` draws lam, the centre's x then its y,
    in this order, with the same formulas. lam becomes the fraction kept.
    """

    def check_input_shape(self, input_shape: tuple[int, ...], *, token_ids: bool = False) -> None:
        super().check_input_shape(input_shape, token_ids=token_ids)
        if len(input_shape) not in (2, 3):
            raise ValueError(
                "CutMix needs images (C, H, W) or series (C, L) per sample, got inputs of "
                f"shape {tuple(input_shape)} (use mix=mixup for flat features)"
            )

    def _mix(self, x: Tensor, lam: float) -> tuple[Tensor, float, Tensor]:
        self.check_input_shape(tuple(x.shape[1:]))
        box = cutmix_box(tuple(x.shape[2:]), lam)
        perm = torch.randperm(x.shape[0]).to(x.device)
        mixed = x.clone()
        region = (..., *(slice(lo, hi) for lo, hi in box))
        mixed[region] = x[region][perm]  # the box of every sample, then permuted
        cut = math.prod(hi - lo for lo, hi in box)
        return mixed, 1.0 - cut / math.prod(x.shape[2:]), perm


def cutmix_box(size: tuple[int, ...], lam: float) -> list[tuple[int, int]]:
    """The clipped box ``[(lo, hi)]`` per spatial axis ((H, W) or (L,)) for a given lam.

    Draws the centre with torch's global generator: x (the last axis) first, then y,
    torchvision's order. The box's area before clipping is about ``(1 - lam)`` of the input.
    """
    side = math.sqrt(1.0 - lam) if len(size) == 2 else 1.0 - lam
    centres = {axis: int(torch.randint(n, ())) for axis, n in reversed(list(enumerate(size)))}
    box = []
    for axis, n in enumerate(size):
        half = int(0.5 * side * n)
        box.append((max(centres[axis] - half, 0), min(centres[axis] + half, n)))
    return box
