"""IWSLT14 German-English (TED talks), prepared as fairseq prepares it.

A port of fairseq's ``examples/translation/prepare-iwslt14.sh`` (itself adapted from
MIXER's ``prepareData.sh``), step by step, on the archive that script downloads,
``de-en.tgz`` from ``dl.fbaipublicfiles.com/fairseq/data/iwslt14``:

1. **Training text**, ``de-en/train.tags.de-en.{de,en}``: lines holding a talk's metadata
   (``<url>``, ``<talkid>``, ``<keywords>``) are dropped; the ``<title>`` and
   ``<description>`` markup is deleted, its text kept as a sentence (fairseq's
   ``grep -v`` / ``sed`` filters, exactly these: a line with other markup stays).
2. Moses tokenisation (``sacremoses``, the Python port of ``tokenizer.perl``, with the
   script's options: the language's rules, no aggressive hyphen splitting, special
   characters escaped as ``&apos;``, ``&quot;``, ...).
3. ``clean-corpus-n.perl -ratio 1.5 ... 1 175`` (:func:`clean_corpus`): whitespace
   collapsed, a pair dropped when a side is empty, has more than 175 or fewer than 1
   tokens, or one side has more than 1.5 times the tokens of the other.
4. Lower-casing (``lowercase.perl``).
5. **Split**: every 23rd line of the cleaned training text (lines 23, 46, ... counting
   from 1) is validation, the rest training.
6. **Test**: the ``<seg id="...">`` lines of ``IWSLT14.TED.dev2010``,
   ``IWSLT14.TEDX.dev2012``, ``IWSLT14.TED.tst2010``, ``tst2011`` and ``tst2012``
   (``.de-en.{de,en}.xml``), in that order, the seg markup removed and the curly
   apostrophe ``’`` made ``'``, tokenised and lower-cased as above (not cleaned).

fairseq then learns a 10,000-merge BPE with ``subword-nmt``; adaptls trains its joint
byte-level BPE on the training split instead (:mod:`adaptls.data.tokenizer`).

**Checksum.** Neither fairseq nor anyone else publishes a checksum of ``de-en.tgz`` (the
archive has been re-hosted since the WIT3 original), so adaptls pins none: the user gives
the SHA-256 of a copy they trust (``data.sha256``, e.g. ``sha256sum de-en.tgz``), and the
download is verified against it like every other (:mod:`adaptls.data.download`).

**BLEU.** References are the tokenised, lower-cased text, so sacrebleu scores tokenised
lower-cased output (its 13a tokeniser finds little left to split): comparable in kind to
the tokenised BLEU fairseq reports on this corpus (``--remove-bpe``), not to detokenised
BLEU.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType

from adaptls.data.download import RemoteFile, fetch

IWSLT14_URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
IWSLT14_LANGUAGES = ("de", "en")
# Training lines that are a talk's metadata, not a sentence: fairseq's `grep -v` filters.
META_TAGS = ("<url>", "<talkid>", "<keywords>")
# Markup fairseq deletes, keeping the title and description text as sentences.
STRIPPED_MARKUP = ("<title>", "</title>", "<description>", "</description>")
# fairseq's test set: these files, concatenated in this order.
TEST_SETS = (
    "IWSLT14.TED.dev2010",
    "IWSLT14.TEDX.dev2012",
    "IWSLT14.TED.tst2010",
    "IWSLT14.TED.tst2011",
    "IWSLT14.TED.tst2012",
)
# clean-corpus-n.perl's arguments in prepare-iwslt14.sh: -ratio 1.5, min 1, max 175.
MIN_TOKENS, MAX_TOKENS, LENGTH_RATIO = 1, 175, 1.5
# clean-corpus-n.perl's own default: a token longer than this drops its pair.
MAX_WORD_LENGTH = 1000
# Every VALID_EVERY-th cleaned training line (1-based) is validation.
VALID_EVERY = 23

_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")
_LAST_WORD_PERIOD = re.compile(r"^(\S+)\.$")
_SHA256 = re.compile(r"[0-9a-f]{64}")

Pairs = list[tuple[str, str]]


def check_iwslt14_sha256(sha256: object) -> str:
    """The user's SHA-256 of ``de-en.tgz`` (64 hex digits, lower-cased); ``None`` is refused
    in one line that says why and what to pass."""
    if sha256 is None:
        raise ValueError(
            f"sha256 is null, and no checksum of {IWSLT14_URL} is published: pass "
            f"data.sha256=<SHA-256 hex of a copy you trust> (e.g. from `sha256sum de-en.tgz`)"
        )
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return sha256.lower()


def iwslt14_archive(sha256: str) -> RemoteFile:
    """fairseq's ``de-en.tgz``, to be verified against the user's ``sha256``."""
    return RemoteFile(IWSLT14_URL, sha256=check_iwslt14_sha256(sha256))


def load_iwslt14(
    data_dir: str | os.PathLike[str], sha256: str, *, download: bool = True, progress: bool = True
) -> dict[str, Pairs]:
    """``{"train", "val", "test": [(de, en), ...]}``, fetched into ``data_dir`` first if
    needed (and ``download`` allows), verified against ``sha256``, then prepared."""
    path = fetch(iwslt14_archive(sha256), data_dir, download=download, progress=progress)
    return read_iwslt14(path)


def read_iwslt14(archive: str | os.PathLike[str]) -> dict[str, Pairs]:
    """The prepared splits of a verified ``de-en.tgz`` (steps 1-6 of the module doc)."""
    tokenizers = {lang: moses_tokenizer(lang) for lang in IWSLT14_LANGUAGES}
    with tarfile.open(archive, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def lines(name: str) -> list[str]:
            if name not in members:
                raise ValueError(f"{archive} is not fairseq's IWSLT14 de-en archive: no {name}")
            file = tar.extractfile(members[name])
            assert file is not None  # a regular file
            return text_lines(file.read().decode("utf-8"))

        train = {
            lang: [
                tokenizers[lang](line) for line in train_lines(lines(f"train.tags.de-en.{lang}"))
            ]
            for lang in IWSLT14_LANGUAGES
        }
        test = {
            lang: [
                tokenizers[lang](line).lower()
                for name in TEST_SETS
                for line in seg_lines(lines(f"{name}.de-en.{lang}.xml"))
            ]
            for lang in IWSLT14_LANGUAGES
        }
    cleaned = [
        (de.lower(), en.lower())
        for de, en in clean_corpus(
            train["de"],
            train["en"],
            min_tokens=MIN_TOKENS,
            max_tokens=MAX_TOKENS,
            ratio=LENGTH_RATIO,
        )
    ]
    if len(test["de"]) != len(test["en"]):
        raise ValueError(
            f"{archive}: the test sets hold {len(test['de'])} German and "
            f"{len(test['en'])} English segments"
        )
    return {
        "train": [p for i, p in enumerate(cleaned, start=1) if i % VALID_EVERY != 0],
        "val": [p for i, p in enumerate(cleaned, start=1) if i % VALID_EVERY == 0],
        "test": list(zip(test["de"], test["en"], strict=True)),
    }


def text_lines(text: str) -> list[str]:
    """The lines of a text file as Perl reads them: split at ``\\n`` only (``str.splitlines``
    would also split at the form feeds and Unicode separators some talks hold, and misalign
    the two languages), the final newline ending the last line."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def train_lines(lines: Iterable[str]) -> list[str]:
    """A ``train.tags`` file's lines without the metadata lines, title and description
    markup deleted (fairseq's filters, in its order)."""
    kept = []
    for line in lines:
        if any(tag in line for tag in META_TAGS):
            continue
        for markup in STRIPPED_MARKUP:
            line = line.replace(markup, "")
        kept.append(line)
    return kept


def seg_lines(lines: Iterable[str]) -> list[str]:
    """The segments of an IWSLT ``.xml`` file: each line holding ``<seg id``, the seg
    markup and the whitespace around it removed, ``’`` made ``'`` (fairseq's ``sed``)."""
    return [
        _SEG_CLOSE.sub("", _SEG_OPEN.sub("", line)).replace("\u2019", "'")
        for line in lines
        if "<seg id" in line
    ]


def clean_corpus(
    source: Sequence[str],
    target: Sequence[str],
    *,
    min_tokens: int = MIN_TOKENS,
    max_tokens: int = MAX_TOKENS,
    ratio: float = LENGTH_RATIO,
) -> Pairs:
    """Moses' ``clean-corpus-n.perl`` on parallel lines (unfactored text; lower-casing is
    a later step): each side's whitespace collapsed and trimmed, ``|`` deleted; a pair is
    dropped when a side is empty, has fewer than ``min_tokens`` or more than
    ``max_tokens`` space-separated tokens, when ``len(a) / len(b) > ratio`` either way, or
    when a token is longer than 1000 characters."""
    if len(source) != len(target):
        raise ValueError(f"parallel files differ in length: {len(source)} and {len(target)} lines")
    kept = []
    for f, e in zip(source, target, strict=True):
        f, e = _clean_line(f), _clean_line(e)
        if not f or not e:
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if not (min_tokens <= fc <= max_tokens and min_tokens <= ec <= max_tokens):
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if any(len(word) > MAX_WORD_LENGTH for side in (f, e) for word in side.split()):
            continue
        kept.append((f, e))
    return kept


def _clean_line(line: str) -> str:
    return re.sub(r"\s+", " ", line.replace("|", "")).strip(" ")


def moses_tokenizer(language: str) -> Callable[[str], str]:
    """``tokenizer.perl -l <language>`` as a function of one line (``sacremoses``), with
    the script's options (no ``-a``, escaping on) and its rule for the last word: Moses
    splits the period off the line's last word always ("unlikely to be non-breaking
    prefixes"), where sacremoses 0.2 keeps a known prefix whole (German ``... Nummer 1.``).
    """
    sacremoses = require_sacremoses()

    class PerlMosesTokenizer(sacremoses.MosesTokenizer):
        def handles_nonbreaking_prefixes(self, text: str) -> str:
            words = super().handles_nonbreaking_prefixes(text).split(" ")
            if words and (last := _LAST_WORD_PERIOD.match(words[-1])):
                words[-1] = f"{last[1]} ."
            return " ".join(words)

    tokenizer = PerlMosesTokenizer(lang=language)

    def tokenize(line: str) -> str:
        return tokenizer.tokenize(line, aggressive_dash_splits=False, return_str=True, escape=True)

    return tokenize


def require_sacremoses() -> ModuleType:
    """The ``sacremoses`` module, or an ImportError naming the extra that installs it."""
    try:
        import sacremoses
    except ImportError as err:
        raise ImportError(
            "corpus iwslt14 needs the sacremoses package (Moses tokenisation): "
            "pip install adaptls[mt]"
        ) from err
    return sacremoses
