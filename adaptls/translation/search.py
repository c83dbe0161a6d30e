r"""Greedy and beam search for an encoder-decoder model, batched over sentences.

The model gives ``encode(source) -> (memory, padding)``, ``decode_step(token, memory,
padding, cache) -> (hidden, cache)`` (one position at a time, earlier positions' states
cached) and ``head`` (hidden -> logits), as
:class:`~adaptls.models.TransformerMT` does. Every hypothesis starts with ``bos_id`` and
ends at ``eos_id`` (not returned) or after ``max_steps`` tokens.

Beam search keeps ``beam_size`` hypotheses per sentence, all sentences in one batch of
B * k rows. At each step every live hypothesis is extended by every token, and the k best
of the k * V candidates by summed log-probability are kept; a finished hypothesis stays
in the beam with its score frozen (its only continuation is padding, at log-probability
0); padding is never generated. The winner is the hypothesis with the best length-normalised score
:math:`\log p(y) / |y|^{\alpha}` (fairseq's ``--lenpen``: :math:`|y|` counts the end
token, :math:`\alpha` = ``length_penalty``; 0 ranks by raw log-probability, larger values
favour longer output). ``beam_size=1`` is greedy search (the argmax token at each step).
Each step decodes one position per hypothesis (the model caches the earlier ones, and
the cache follows the beams as they are reordered).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from adaptls.checks import check_int, check_nonnegative


class EncoderDecoder(Protocol):
    head: nn.Linear

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode_step(
        self, token: Tensor, memory: Tensor, memory_padding: Tensor, cache: list[Tensor] | None
    ) -> tuple[Tensor, list[Tensor]]: ...


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    sources: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_steps: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """The best hypothesis (token ids, without ``bos_id``/``eos_id``) for each of the
    (B, S) ``sources`` (right-padded with ``pad_id``)."""
    k = check_int("beam_size", beam_size, minimum=1)
    alpha = check_nonnegative("length_penalty", length_penalty)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    b = sources.shape[0]
    memory, padding = model.encode(sources)
    memory = memory.repeat_interleave(k, 0)
    padding = padding.repeat_interleave(k, 0)
    device = sources.device
    prefix = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per sentence at the start, not k copies of it
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, device=device)
    cache = None
    for _ in range(max_steps):
        hidden, cache = model.decode_step(prefix[:, -1], memory, padding, cache)
        logp = torch.log_softmax(model.head(hidden).float(), dim=-1)
        vocab = logp.shape[-1]
        # padding is never a token of a live hypothesis (as in fairseq); a finished one
        # continues with padding only, at no cost
        logp[:, pad_id] = float("-inf")
        logp[finished] = float("-inf")
        logp[finished, pad_id] = 0.0
        candidates = (scores.view(b, k, 1) + logp.view(b, k, vocab)).view(b, k * vocab)
        scores, best = candidates.topk(k, dim=-1)
        beam = (best // vocab + torch.arange(b, device=device).view(b, 1) * k).view(-1)
        token = (best % vocab).view(-1)
        lengths = lengths[beam] + (~finished[beam]).float()
        finished = finished[beam] | (token == eos_id)
        prefix = torch.cat([prefix[beam], token.view(-1, 1)], dim=1)
        cache = [states[beam] for states in cache]
        if bool(finished.all()):
            break
    normalised = scores.view(-1) / lengths.clamp(min=1).pow(alpha)
    winner = normalised.view(b, k).argmax(-1) + torch.arange(b, device=device) * k
    return [_strip(row, eos_id, pad_id) for row in prefix[winner, 1:].tolist()]


def greedy_search(
    model: EncoderDecoder,
    sources: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_steps: int,
) -> list[list[int]]:
    """The argmax token at each step (beam search with one hypothesis)."""
    return beam_search(
        model,
        sources,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_steps=max_steps,
        beam_size=1,
        length_penalty=0.0,
    )


def _strip(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """The tokens before the first end token, padding dropped."""
    if eos_id in ids:
        ids = ids[: ids.index(eos_id)]
    return [i for i in ids if i != pad_id]
