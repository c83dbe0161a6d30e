"""Translate a split: batches of source rows -> search -> detokenised text."""

from __future__ import annotations

from typing import Any

import torch

from adaptls.checks import check_int, check_nonnegative
from adaptls.translation.search import EncoderDecoder, beam_search


def translate(
    model: EncoderDecoder,
    task: Any,
    *,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> list[str]:
    """The detokenised translation of each source row of ``task`` (a
    :class:`~adaptls.data.text_mt.TranslationTask`), in order.

    A batch whose longest source has S tokens (its end token included) is decoded for at
    most ``min(max_len_a * S + max_len_b, model.max_length)`` tokens (fairseq's
    ``--max-len-a``/``--max-len-b``; the model has no positions past ``max_length``).
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_len_a = check_nonnegative("max_len_a", max_len_a)
    max_len_b = check_int("max_len_b", max_len_b, minimum=0)
    limit = getattr(model, "max_length", None)
    # Sentences of similar length decode together (as fairseq batches them): a batch runs
    # until its longest hypothesis ends, so one long sentence would hold up short ones.
    lengths = (task.sources != task.pad_id).sum(1)
    order = torch.argsort(lengths, stable=True)
    out: list[str] = [""] * len(task.sources)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        rows = task.sources[chosen]
        width = int((rows != task.pad_id).sum(1).max()) if len(rows) else 1
        rows = rows[:, : max(width, 1)].to(device)
        steps = max(1, int(max_len_a * width + max_len_b))
        if limit is not None:
            steps = min(steps, limit)
        ids = beam_search(
            model,
            rows,
            bos_id=task.bos_id,
            eos_id=task.eos_id,
            pad_id=task.pad_id,
            max_steps=steps,
            beam_size=beam_size,
            length_penalty=length_penalty,
        )
        for row, hypothesis in zip(chosen.tolist(), ids, strict=True):
            out[row] = task.detokenize(hypothesis)
    return out
