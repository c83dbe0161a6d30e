"""SST-2 (Socher et al. 2013, binary sentence sentiment) from the official GLUE archive.

``SST-2.zip`` (7,439,277 bytes) holds ``SST-2/train.tsv`` (67,349 labelled phrases and
sentences), ``SST-2/dev.tsv`` (872 labelled sentences) and ``SST-2/test.tsv`` (1,821
sentences whose labels GLUE keeps hidden). Each ``.tsv`` starts with the header
``sentence<TAB>label``; every following line is one lower-cased, tokenised text, a tab and
its label, 0 (negative) or 1 (positive); no quoting (texts contain bare quotes). As in
GLUE practice, the labelled dev set is the test set here and validation is held out of
train. The checksums are those published for this URL by TensorFlow Datasets and Hugging
Face ``datasets`` (SHA-256) and by torchtext (md5).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import Tensor

from adaptls.data.download import RemoteFile

SST2_ARCHIVE = RemoteFile(
    "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    md5="9f81648d4199384278b86e315dac217c",
    sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
)
SST2_LABELS = ("negative", "positive")
_HEADER = "sentence\tlabel"


def read_sst2(path: str | Path | None) -> tuple[list[str], Tensor, list[str], Tensor]:
    """``(train_texts, train_labels, test_texts, test_labels)`` of an ``SST-2.zip``; the
    test split is GLUE's labelled dev set. Labels are int64 in {0, 1}."""
    if path is None:
        raise ValueError("read_sst2 needs the path of SST-2.zip, got None")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        splits = []
        for member in ("SST-2/train.tsv", "SST-2/dev.tsv"):
            if member not in names:
                raise ValueError(f"{path} is not the GLUE SST-2 archive: it lacks {member}")
            splits.append(parse_tsv(archive.read(member).decode("utf-8"), member))
    (train_texts, train_labels), (test_texts, test_labels) = splits
    return train_texts, train_labels, test_texts, test_labels


def parse_tsv(content: str, name: str) -> tuple[list[str], Tensor]:
    """Texts and labels of one GLUE SST-2 ``.tsv`` (see the module docstring); ``name``
    only labels the errors."""
    lines = content.splitlines()
    if not lines or lines[0] != _HEADER:
        found = lines[0] if lines else ""
        raise ValueError(f"{name}: expected the header {_HEADER!r}, found {found!r}")
    texts, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        text, tab, label = line.rpartition("\t")
        if not tab or label not in ("0", "1") or not text.strip():
            raise ValueError(
                f"{name} line {number}: expected '<sentence>\\t<0 or 1>', found {line!r}"
            )
        texts.append(text)
        labels.append(int(label))
    return texts, torch.tensor(labels, dtype=torch.int64)
