"""Models whose last layer is a plain linear head, exposed so the loss can fuse with it.

A model follows this protocol when it has

- ``features(x) -> hidden``: everything up to the last layer, (..., D) hidden states;
- ``head``: the last layer, an ``nn.Linear(D, V)`` (weight (V, D), bias (V,) or None);

and ``forward(x) == head(features(x))``. The Lightning module then trains it through
:meth:`~adaptls.smoothing.StrategyDriver.linear_loss` with ``head.weight`` and
``head.bias``, which never holds the N x V logits (at V = 32000 and N = 8192 tokens they
alone take 1 GB). Evaluation still calls ``forward`` batch by batch. Models without these
attributes (every image and series classifier) are trained on their logits as before.
"""

from __future__ import annotations

from torch import nn


def has_linear_head(net: nn.Module) -> bool:
    """Whether ``net`` exposes ``features(x)`` and an ``nn.Linear`` ``head`` (see above)."""
    return callable(getattr(net, "features", None)) and isinstance(
        getattr(net, "head", None), nn.Linear
    )
