r"""A small causal Transformer decoder for next-token prediction (GPT-2's layout).

token + learned position embeddings -> dropout -> ``layers`` pre-norm blocks
[x + Attn(LN(x)), then x + MLP(LN(x))] -> LN -> linear head to V logits. Attention is
causal: position t attends to positions <= t only, so an output never depends on later
tokens (padding at the end of a block included). The MLP is D -> 4D -> D with GELU.
Initialisation follows GPT-2: weights N(0, 0.02), the residual projections scaled by
:math:`1/\sqrt{2L}`, biases zero.

The head is exposed for the fused loss (:mod:`adaptls.models.linear_head`):
``features(x)`` gives the (B, T, D) hidden states after the final norm, ``head`` is the
``nn.Linear(D, V)``, ``forward(x) = head(features(x))``. With ``tie_embeddings`` the head
shares its weight with the token embedding (Press & Wolf 2017; GPT-2) and has no bias.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adaptls.checks import check_bool, check_int, check_num_classes
from adaptls.models._checks import check_dropout
from adaptls.models.inputs import ModelInputs


class TransformerLM(nn.Module):
    """Causal decoder: (B, T) int64 token ids -> (B, T, V) next-token logits.

    Args:
        input_shape: ``(T,)``, the data's block length.
        num_classes: V, the vocabulary size.
        layers: decoder blocks.
        width: D, the model width (a multiple of ``heads``).
        heads: attention heads.
        dropout: on embeddings, attention weights and residual branches, in [0, 1).
        tie_embeddings: share the token embedding with the head (no head bias).
        context_length: positions the model can take (its position table); ``None``: T.
            It must be at least T.
    """

    #: the learning rate where ``optimizer.lr`` is null (AdamW; lm_smoothing's)
    default_lr: ClassVar[float] = 0.005

    #: what it reads (checked against the data before a run): token ids, a target per token
    inputs: ClassVar[ModelInputs] = ModelInputs(
        ranks=(1,), layout="(T,)", token_ids=True, token_level=True
    )

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        layers: int = 2,
        width: int = 128,
        heads: int = 4,
        dropout: float = 0.1,
        tie_embeddings: bool = True,
        context_length: int | None = None,
    ) -> None:
        super().__init__()
        (block_length,) = self.inputs.check_shape(input_shape)
        vocab = check_num_classes(num_classes)
        layers = check_int("layers", layers, minimum=1)
        width = check_int("width", width, minimum=1)
        heads = check_int("heads", heads, minimum=1)
        if width % heads:
            raise ValueError(f"width must be a multiple of heads ({heads}), got {width}")
        dropout = check_dropout(dropout)
        tie_embeddings = check_bool("tie_embeddings", tie_embeddings)
        if context_length is None:
            context_length = block_length
        self.context_length = check_int("context_length", context_length, minimum=1)
        if self.context_length < block_length:
            raise ValueError(
                f"context_length must be at least the data's block length {block_length}, "
                f"got {context_length}"
            )
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(self.context_length, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=not tie_embeddings)
        self._init_weights(layers)
        if tie_embeddings:
            self.head.weight = self.tokens.weight

    def _init_weights(self, layers: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # residual branches: their sum grows with depth
            for projection in (block.attention.out, block.mlp[2]):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * layers))

    def features(self, x: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, D) final hidden states (T <= context_length)."""
        if x.dim() != 2 or x.is_floating_point() or x.is_complex():
            raise ValueError(
                f"expected a (B, T) batch of integer token ids, got {tuple(x.shape)} {x.dtype}"
            )
        if x.shape[1] > self.context_length:
            raise ValueError(
                f"sequence of {x.shape[1]} tokens exceeds context_length {self.context_length}"
            )
        position = torch.arange(x.shape[1], device=x.device)
        h = self.dropout(self.tokens(x) + self.positions(position))
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, V) logits; ``logits[:, t]`` predicts token t + 1."""
        return self.head(self.features(x))


class DecoderBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)), dropout on both branches."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.dropout(self.mlp(self.norm2(x)))


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.attention_dropout = dropout
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=True,
        )
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, d)))
