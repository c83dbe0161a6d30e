"""WMT14 English-German, small: News Commentary v9 to train, newstest2013 to validate,
newstest2014 to test.

The full WMT14 training data (Europarl, Common Crawl, News Commentary: 4.5M pairs) needs
a cluster; News Commentary v9 alone (about 200k de-en pairs) trains on one GPU. The files
are the ones TensorFlow Datasets' ``wmt14_translate`` reads, with its member names
(``tensorflow_datasets/translate/wmt.py``: the ``newscommentary_v9``, ``newstest2013`` and
``newstest2014`` sub-datasets):

- ``training-parallel-nc-v9.tgz`` (80,418,416 bytes): ``training/news-commentary-v9.de-en.{de,en}``,
  one sentence a line, line i of one file the translation of line i of the other;
- WMT19's ``dev.tgz`` (38,654,961 bytes): ``dev/newstest2013.{de,en}`` (plain text, as
  above) and ``dev/newstest2014-deen-src.de.sgm`` / ``dev/newstest2014-deen-ref.en.sgm``
  (SGML: one ``<seg id="N">text</seg>`` line per sentence, read with TFDS's pattern, not
  an XML parser, as some WMT files are not well-formed XML).

Both are pinned by the SHA-256 TensorFlow Datasets records for these URLs
(``tensorflow_datasets/url_checksums/wmt14_translate.txt``, with the sizes above): a
server sending other bytes fails verification and nothing is written.

As in TFDS, a pair with an empty side is dropped; each side is stripped of surrounding
whitespace. The text stays raw (no Moses step): the BPE reads it as it is, and sacrebleu
scores detokenised output against raw references (its standard 13a tokenisation), the
BLEU WMT reports. Both directions (de-en, en-de) use the same newstest2014 pairs.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

from adaptls.data.download import RemoteFile, fetch
from adaptls.data.iwslt14 import text_lines

NEWS_COMMENTARY_V9 = RemoteFile(
    "http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
    sha256="cb8953f292298e6877ae433c98912b927cb0766b303f4540512ddd286c748485",
)
WMT_DEV = RemoteFile(
    "http://data.statmt.org/wmt19/translation-task/dev.tgz",
    sha256="7a7deccf82ebb05ba508dba5eb21356492224e8f630ec4f992132b029b4b25e7",
)
WMT14_LANGUAGES = ("de", "en")
# Each split: (archive, German member, English member).
SPLIT_FILES = {
    "train": (
        "news_commentary",
        "training/news-commentary-v9.de-en.de",
        "training/news-commentary-v9.de-en.en",
    ),
    "val": ("dev", "dev/newstest2013.de", "dev/newstest2013.en"),
    "test": ("dev", "dev/newstest2014-deen-src.de.sgm", "dev/newstest2014-deen-ref.en.sgm"),
}
# TFDS's segment pattern, matched at the start of a line.
_SEG = re.compile(r'<seg id="\d+">(.*)</seg>')

Pairs = list[tuple[str, str]]


def load_wmt14(
    data_dir: str | os.PathLike[str], *, download: bool = True, progress: bool = True
) -> dict[str, Pairs]:
    """``{"train", "val", "test": [(de, en), ...]}``, the two archives fetched into
    ``data_dir`` first if needed (and ``download`` allows) and verified."""
    archives = {
        "news_commentary": fetch(
            NEWS_COMMENTARY_V9, data_dir, download=download, progress=progress
        ),
        "dev": fetch(WMT_DEV, data_dir, download=download, progress=progress),
    }
    return read_wmt14(archives["news_commentary"], archives["dev"])


def read_wmt14(
    news_commentary: str | os.PathLike[str], dev: str | os.PathLike[str]
) -> dict[str, Pairs]:
    """The splits of verified ``training-parallel-nc-v9.tgz`` and ``dev.tgz`` files."""
    paths = {"news_commentary": news_commentary, "dev": dev}
    sentences = {  # each archive decompressed once, for all the members it serves
        name: read_members(
            path, [m for a, *pair in SPLIT_FILES.values() if a == name for m in pair]
        )
        for name, path in paths.items()
    }
    return {
        split: parallel(sentences[archive][de], sentences[archive][en])
        for split, (archive, de, en) in SPLIT_FILES.items()
    }


def read_members(archive: str | os.PathLike[str], members: list[str]) -> dict[str, list[str]]:
    """The sentences of some members of a ``.tgz``: the ``<seg>`` texts of a ``.sgm``,
    the lines (split at ``\\n`` only) of any other file."""
    out = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in members:
            try:
                file = tar.extractfile(member)
            except KeyError:
                file = None
            if file is None:
                raise ValueError(f"{archive} lacks {member}: not the WMT archive expected there")
            text = file.read().decode("utf-8")
            out[member] = sgm_segments(text) if Path(member).suffix == ".sgm" else text_lines(text)
    return out


def sgm_segments(text: str) -> list[str]:
    """The texts of the ``<seg id="N">...</seg>`` lines of a WMT ``.sgm`` file, in order."""
    return [match[1] for line in text.split("\n") if (match := _SEG.match(line))]


def parallel(german: list[str], english: list[str]) -> Pairs:
    """``[(de, en), ...]`` of two aligned files, stripped, pairs with an empty side dropped."""
    if len(german) != len(english):
        raise ValueError(
            f"parallel files differ in length: {len(german)} German, {len(english)} English"
        )
    stripped = ((de.strip(), en.strip()) for de, en in zip(german, english, strict=True))
    return [(de, en) for de, en in stripped if de and en]
