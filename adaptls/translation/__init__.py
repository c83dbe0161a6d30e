"""Translation: decoding (greedy and beam search) and corpus scores (BLEU, chrF)."""

from adaptls.translation.scores import bleu_tokenizer, corpus_scores
from adaptls.translation.search import beam_search, greedy_search
from adaptls.translation.translate import translate

__all__ = ["beam_search", "bleu_tokenizer", "corpus_scores", "greedy_search", "translate"]
