"""WikiText-2 and WikiText-103 (Merity et al., 2016), the raw character-level releases.

The archives are the authors' raw releases (``wikitext-{2,103}-raw-v1.zip``: untokenised
text, no ``<unk>``, which byte-level BPE needs), fetched once into ``data_dir`` and
verified by SHA-256 before use (:mod:`adaptls.data.download`). Salesforce's original S3
links are gone; the files are served from the author's site. The checksums are those of
the original release as recorded by Hugging Face ``datasets`` (``dataset_infos.json`` of
its ``wikitext`` builder: 4,721,645 and 191,984,949 bytes): a mirror serving other bytes
fails verification and nothing is written.

Each archive holds ``wikitext-N-raw/wiki.{train,valid,test}.raw``: one paragraph per line,
every line framed by spaces, articles introduced by a top-level heading line
``" = Title = "`` (sections are ``" = = Section = = "``). :func:`read_wikitext` cuts each
split into articles at the top-level headings; the official train/valid/test split is kept.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from adaptls.data.download import RemoteFile, fetch

WIKITEXT_ARCHIVES = {
    "wikitext2": RemoteFile(
        "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
        sha256="ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    ),
    "wikitext103": RemoteFile(
        "https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
        sha256="91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
    ),
}
SPLIT_FILES = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}
# A top-level heading: "= Title =" with one '=' on each side (sections have two or more).
_ARTICLE_HEADING = re.compile(r"^ ?= [^=].* = ?$")


def load_wikitext(
    name: str, data_dir: str | os.PathLike[str], *, download: bool = True, progress: bool = True
) -> dict[str, list[str]]:
    """``{"train", "val", "test": [article, ...]}`` of WikiText ``name`` (``wikitext2`` or
    ``wikitext103``), fetched into ``data_dir`` first if needed and ``download`` allows."""
    if name not in WIKITEXT_ARCHIVES:
        raise ValueError(f"name must be one of {', '.join(WIKITEXT_ARCHIVES)}, got {name!r}")
    path = fetch(WIKITEXT_ARCHIVES[name], data_dir, download=download, progress=progress)
    return read_wikitext(path)


def read_wikitext(archive: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The articles of each split of a verified ``wikitext-*-raw-v1.zip``."""
    with zipfile.ZipFile(archive) as zf:
        members = {Path(info.filename).name: info.filename for info in zf.infolist()}
        missing = [file for file in SPLIT_FILES.values() if file not in members]
        if missing:
            raise ValueError(f"{archive} is not a WikiText raw archive: it lacks {missing}")
        return {
            split: split_articles(zf.read(members[file]).decode("utf-8"))
            for split, file in SPLIT_FILES.items()
        }


def split_articles(text: str) -> list[str]:
    """Cut one WikiText split into articles at its top-level ``" = Title = "`` lines; each
    article keeps its heading, surrounding blank space stripped. Text before the first
    heading (none in the official files) is an article of its own."""
    articles: list[list[str]] = [[]]
    for line in text.splitlines():
        if _ARTICLE_HEADING.match(line) and any(part.strip() for part in articles[-1]):
            articles.append([])
        articles[-1].append(line)
    return [joined for lines in articles if (joined := "\n".join(lines).strip())]
