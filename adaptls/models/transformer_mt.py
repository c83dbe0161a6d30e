r"""A small encoder-decoder Transformer for translation (Vaswani et al. 2017, pre-norm).

One embedding table serves the source, the target and the output layer (a joint
vocabulary; Press & Wolf 2017, fairseq's ``--share-all-embeddings``): tokens are embedded
as :math:`\sqrt{D}\,E[x]` plus a learned position embedding, then dropout. The encoder is
``layers`` pre-norm blocks [x + SelfAttn(LN(x)), x + FFN(LN(x))] and a final LN; the
decoder is ``layers`` pre-norm blocks with causal self-attention, attention over the
encoder's output and the FFN, and a final LN. The FFN is D -> 4D -> D with ReLU.
Padding (id ``pad_id``) is masked out of every attention. Initialisation follows fairseq:
embeddings N(0, D^-1/2), padding row zero.

Inputs are the data's ``(B, 2, L)`` rows (:mod:`adaptls.data.text_mt`): ``x[:, 0]`` the
source, ``x[:, 1]`` the decoder input. ``features(x)`` gives the decoder's (B, L, D)
hidden states (any L up to ``max_length``: the data trims each batch to its longest row),
``head`` the ``nn.Linear(D, V)`` tied to the embedding (no bias), so
training goes through the fused linear loss and never holds the N x V logits;
``forward(x) = head(features(x))``. :meth:`encode` and :meth:`decode_step` (one position
at a time, with a cache of each layer's states) are what search
(:mod:`adaptls.translation.search`) calls.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from adaptls.checks import check_int, check_num_classes
from adaptls.models._checks import check_dropout
from adaptls.models.inputs import ModelInputs


class TransformerMT(nn.Module):
    """Encoder-decoder: (B, 2, L) int64 source and decoder-input rows -> (B, L, V) logits.

    Args:
        input_shape: ``(2, L)``, the data's rows.
        num_classes: V, the joint vocabulary size.
        layers: encoder blocks, and as many decoder blocks.
        width: D, the model width (a multiple of ``heads``).
        heads: attention heads.
        dropout: on embeddings, attention weights, FFN activations and residual branches.
        pad_id: the padding token (masked out of attention).
        max_length: positions the model can take; ``None``: L.
    """

    #: the learning rate where ``optimizer.lr`` is null (AdamW; 0.02 ends text_mt at BLEU 0.2)
    default_lr: ClassVar[float] = 0.002

    #: what it reads (checked against the data before a run): source and decoder-input rows
    inputs: ClassVar[ModelInputs] = ModelInputs(
        ranks=(2,), layout="(2, L): source and decoder-input rows", token_ids=True, token_level=True
    )

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        layers: int = 2,
        width: int = 128,
        heads: int = 4,
        dropout: float = 0.1,
        pad_id: int = 0,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        rows, length = self.inputs.check_shape(input_shape)
        if rows != 2:
            raise ValueError(
                f"input_shape must be (2, L), source and decoder input, got {input_shape}"
            )
        vocab = check_num_classes(num_classes)
        layers = check_int("layers", layers, minimum=1)
        width = check_int("width", width, minimum=1)
        heads = check_int("heads", heads, minimum=1)
        if width % heads:
            raise ValueError(f"width must be a multiple of heads ({heads}), got {width}")
        dropout = check_dropout(dropout)
        self.pad_id = check_int("pad_id", pad_id, minimum=0)
        self.max_length = check_int(
            "max_length", max_length if max_length is not None else length, minimum=1
        )
        if self.max_length < length:
            raise ValueError(f"max_length must be at least the data's L {length}, got {max_length}")
        self.width = width
        self.tokens = nn.Embedding(vocab, width, padding_idx=self.pad_id)
        self.positions = nn.Embedding(self.max_length, width)
        self.dropout = nn.Dropout(dropout)
        layer = dict(
            d_model=width,
            nhead=heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(**layer),
            layers,
            norm=nn.LayerNorm(width),
            enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(**layer), layers, norm=nn.LayerNorm(width)
        )
        self.head = nn.Linear(width, vocab, bias=False)
        nn.init.normal_(self.tokens.weight, std=width**-0.5)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.tokens.weight[self.pad_id].zero_()
        self.head.weight = self.tokens.weight

    def embed(self, ids: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, D): sqrt(D) token embedding + position embedding, dropout."""
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"sequence of {ids.shape[1]} tokens exceeds max_length {self.max_length}"
            )
        position = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.tokens(ids) * math.sqrt(self.width) + self.positions(position))

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) source ids -> (memory (B, S, D), padding mask (B, S), True at padding)."""
        padding = source == self.pad_id
        return self.encoder(self.embed(source), src_key_padding_mask=padding), padding

    def decode(self, prefix: Tensor, memory: Tensor, memory_padding: Tensor) -> Tensor:
        """(B, T) decoder input ids -> (B, T, D) final hidden states; position t sees the
        prefix up to t and the whole (unpadded) source."""
        t = prefix.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=prefix.device), 1)
        return self.decoder(
            self.embed(prefix),
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            tgt_key_padding_mask=prefix == self.pad_id,
            memory_key_padding_mask=memory_padding,
        )

    def decode_step(
        self,
        token: Tensor,
        memory: Tensor,
        memory_padding: Tensor,
        cache: list[Tensor] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """One more decoder position: (N,) next input tokens -> ((N, D) final hidden state
        of that position, the new cache).

        Equal to ``decode(prefix + [token])[:, -1]`` without decoding the prefix again:
        a pre-norm causal decoder never changes the states of earlier positions, so each
        layer's normalised inputs of the positions so far (``cache``, one (N, t, D) tensor
        per layer; None for the first position) are all its self-attention needs. The new
        position attends to every cached one (the prefix has no padding: search never
        generates it). Reorder beams with ``[c[rows] for c in cache]``. Evaluation only:
        dropout is skipped.
        """
        t = 0 if cache is None else cache[0].shape[1]
        if t >= self.max_length:
            raise ValueError(f"sequence of {t + 1} tokens exceeds max_length {self.max_length}")
        position = self.positions.weight[t]
        x = (self.tokens(token) * math.sqrt(self.width) + position).unsqueeze(1)
        new_cache = []
        for i, layer in enumerate(self.decoder.layers):
            normed = layer.norm1(x)
            keys = normed if cache is None else torch.cat([cache[i], normed], dim=1)
            new_cache.append(keys)
            x = x + layer.self_attn(normed, keys, keys, need_weights=False)[0]
            attended = layer.multihead_attn(
                layer.norm2(x),
                memory,
                memory,
                key_padding_mask=memory_padding,
                need_weights=False,
            )[0]
            x = x + attended
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return self.decoder.norm(x[:, 0]), new_cache

    def features(self, x: Tensor) -> Tensor:
        """(B, 2, L) rows -> (B, L, D) decoder hidden states."""
        if x.dim() != 3 or x.shape[1] != 2 or x.is_floating_point() or x.is_complex():
            raise ValueError(
                f"expected a (B, 2, L) batch of integer token ids, got {tuple(x.shape)} {x.dtype}"
            )
        memory, padding = self.encode(x[:, 0])
        return self.decode(x[:, 1], memory, padding)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 2, L) rows -> (B, L, V) logits; ``logits[:, t]`` predicts the token after
        ``x[:, 1, t]``."""
        return self.head(self.features(x))
