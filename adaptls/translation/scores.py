"""Corpus BLEU and chrF of detokenised output with ``sacrebleu``, and their signatures.

sacrebleu (Post 2018) scores detokenised text against detokenised references with its own
standard tokenisation, so scores are comparable across papers that give the same
signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``). BLEU's
tokeniser depends on the target language: ``13a`` (sacrebleu's default, WMT's
``mteval-v13a``) for languages written with spaces, ``zh`` for Chinese, and ``char`` for
Japanese and Korean (sacrebleu's own ``ja-mecab`` / ``ko-mecab`` need MeCab, which is not
installed here). chrF (Popović 2015, character 6-grams, beta 2) needs no tokeniser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Target languages whose BLEU tokeniser is not sacrebleu's default 13a.
_TOKENIZERS = {"zh": "zh", "ja": "char", "ko": "char"}


def bleu_tokenizer(target_language: str | None) -> str:
    """sacrebleu's BLEU tokeniser for output in ``target_language`` (ISO 639-1)."""
    return _TOKENIZERS.get(target_language or "", "13a")


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a"
) -> dict[str, Any]:
    """``{"bleu", "chrf"}`` (0-100) of one hypothesis per reference, and
    ``{"bleu_signature", "chrf_signature"}``: sacrebleu's description of each score."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(
            f"one hypothesis per reference: got {len(hypotheses)} hypotheses and "
            f"{len(references)} references"
        )
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": float(bleu_score.score),
        "chrf": float(chrf_score.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
