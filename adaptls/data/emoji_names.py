"""Language identification on CLDR emoji names: a real labelled text set with no download.

The ``emoji`` package ships, inside its wheel, the Unicode CLDR short names of every emoji
in 14 languages (``emoji/unicode_codes/emoji_<lang>.json``): human translations such as
``:thumbs_up:`` / ``:pouce_vers_le_haut:`` / ``:большой_палец_вверх:``. Each name is a
short text whose label is its language. That is the only labelled text found among this
project's installable packages (the sentiment and topic sets of nltk, scikit-learn, keras,
shap and Hugging Face ``datasets`` are all downloaded at run time, not shipped).

What is kept: fully-qualified emoji without a skin-tone modifier (the five skin-tone
variants of a name differ only in a suffix, so they would be near-duplicates across
splits), 1923 emoji in emoji 2.16. Names are turned into plain text: the ``:`` delimiters
are dropped and ``_`` becomes a space. A (text, language) pair is kept once; the same text
in several languages (a country's name, "OK") stays in each: irreducible ambiguity, as in
real language identification.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Label order (class c = LANGUAGES[c]): alphabetical by ISO 639-1 code. Long-tailed
# variants keep the most samples of class 0.
LANGUAGES = ("ar", "de", "en", "es", "fa", "fr", "id", "it", "ja", "ko", "pt", "ru", "tr", "zh")
# Fitzpatrick skin-tone modifiers U+1F3FB..U+1F3FF.
_SKIN_TONES = frozenset(chr(code) for code in range(0x1F3FB, 0x1F400))


def load_emoji_names() -> tuple[list[str], Tensor, Tensor]:
    """``(texts, labels, groups)``: every kept emoji name, its language (index into
    :data:`LANGUAGES`, int64) and its emoji (int64 group id, the same for the 14 names of
    one emoji, so that splits can keep all translations of an emoji on one side)."""
    texts, labels, groups = _read_emoji_names()
    return list(texts), torch.tensor(labels), torch.tensor(groups)


@functools.cache
def _read_emoji_names() -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """The corpus, read once per process (14 JSON files), as immutable tuples."""
    import emoji  # a runtime dependency, imported only by the datamodule that needs it

    emoji.config.load_language(list(LANGUAGES))
    fully_qualified = emoji.STATUS["fully_qualified"]
    kept = [
        symbol
        for symbol, entry in emoji.EMOJI_DATA.items()
        if entry["status"] == fully_qualified and not _SKIN_TONES.intersection(symbol)
    ]
    texts, labels, groups, seen = [], [], [], set()
    for group, symbol in enumerate(kept):
        entry = emoji.EMOJI_DATA[symbol]
        for label, language in enumerate(LANGUAGES):
            text = entry[language].strip(":").replace("_", " ").strip()
            if text and (text, label) not in seen:
                seen.add((text, label))
                texts.append(text)
                labels.append(label)
                groups.append(group)
    return tuple(texts), tuple(labels), tuple(groups)


def split_by_group(
    groups: Tensor, test_fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(train, test)`` row indices (sorted int64): ``round(test_fraction * G)`` random
    groups of the G distinct ones, with all their rows, go to test."""
    distinct = groups.unique()
    order = distinct[torch.randperm(len(distinct), generator=generator)]
    held = order[: int(test_fraction * len(distinct) + 0.5)]
    in_test = torch.isin(groups, held)
    return (~in_test).nonzero().flatten(), in_test.nonzero().flatten()
