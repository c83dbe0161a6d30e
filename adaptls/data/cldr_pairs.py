"""A parallel corpus that installed packages ship: CLDR names, human-translated, no download.

Unicode CLDR is translated by people, entry by entry, into every language it supports. Two
installed packages carry parts of it:

- ``emoji`` (a core dependency): the short name of every emoji in 14 languages
  (:mod:`adaptls.data.emoji_names` reads the same files): "thumbs up" / "Daumen hoch";
- ``babel`` (a core dependency): CLDR's display names of languages, territories, scripts,
  currencies and variants: "Switzerland" / "Schweiz", "Euro" / "Euro".

:func:`cldr_pairs` joins the two for a language pair: each (source, target) pair of
names of the same thing, kept once (exact duplicates dropped) and never when source and
target are the same string (a name left untranslated, "Euro" / "Euro", teaches nothing
about translation and would flatter BLEU). Emoji with a skin-tone modifier are left out,
as in ``text_cls``: the five variants of a name differ only in a suffix.

Counts (emoji 2.16, babel 2.19): en-de 2809 pairs (1836 emoji, 973 babel), en-ja 3380
pairs (1921 emoji, 1459 babel); both depend on the installed versions (the tokenizer's
cache key holds the text itself, so another version never reuses a stale vocabulary). Pairs come sorted, so a seeded split is reproducible.
"""

from __future__ import annotations

import functools

# The languages both packages name things in (emoji's 14; babel has them all).
LANGUAGES = ("ar", "de", "en", "es", "fa", "fr", "id", "it", "ja", "ko", "pt", "ru", "tr", "zh")
# Babel's display-name tables (``babel.Locale`` properties) that are read.
BABEL_TABLES = ("languages", "territories", "scripts", "currencies", "variants")


def cldr_pairs(source: str, target: str) -> list[tuple[str, str]]:
    """Sorted, distinct ``(source name, target name)`` pairs of CLDR names, source != target."""
    for name, language in (("source", source), ("target", target)):
        if language not in LANGUAGES:
            raise ValueError(
                f"{name} language must be one of {', '.join(LANGUAGES)}, got {language!r}"
            )
    if source == target:
        raise ValueError(f"source and target languages must differ, got {source!r} for both")
    pairs = set(_emoji_pairs(source, target)) | set(_babel_pairs(source, target))
    return sorted((s, t) for s, t in pairs if s and t and s != t)


@functools.cache
def _emoji_pairs(source: str, target: str) -> tuple[tuple[str, str], ...]:
    from adaptls.data.emoji_names import LANGUAGES as EMOJI_LANGUAGES
    from adaptls.data.emoji_names import _read_emoji_names

    texts, labels, groups = _read_emoji_names()
    names: dict[int, dict[str, str]] = {}
    for text, label, group in zip(texts, labels, groups, strict=True):
        names.setdefault(group, {})[EMOJI_LANGUAGES[label]] = text
    return tuple(
        (_clean(entry[source]), _clean(entry[target]))
        for entry in names.values()
        if source in entry and target in entry
    )


@functools.cache
def _babel_pairs(source: str, target: str) -> tuple[tuple[str, str], ...]:
    from babel import Locale  # a runtime dependency, imported only where it is needed

    src, tgt = Locale.parse(source), Locale.parse(target)
    pairs = []
    for table in BABEL_TABLES:
        src_names, tgt_names = getattr(src, table), getattr(tgt, table)
        for key in sorted(src_names):
            if key in tgt_names:
                pairs.append((_clean(src_names[key]), _clean(tgt_names[key])))
    return tuple(pairs)


def _clean(text: str) -> str:
    """One line, single spaces."""
    return " ".join(text.split())
