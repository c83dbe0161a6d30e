"""Text classification datamodule: labelled texts -> padded BPE token ids.

Corpora (``corpus=``):

- ``emoji_lang`` (default, no download): language identification of CLDR emoji names in
  14 languages, shipped inside the ``emoji`` wheel (:mod:`adaptls.data.emoji_names`).
  Test = a fixed 20% of the emoji (all 14 names of each), so no test emoji was seen in
  training in any language.
- ``sst2``: GLUE's SST-2 sentiment set, downloaded once (SHA-256 verified, cached in
  ``data_dir``; :mod:`adaptls.data.sst2`); its labelled dev set is the test set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from adaptls.checks import check_bool, check_choice, check_int
from adaptls.data.base import TensorDataModule, collate_tuple
from adaptls.data.download import RemoteFile, fetch
from adaptls.data.emoji_names import LANGUAGES, load_emoji_names, split_by_group
from adaptls.data.sst2 import SST2_ARCHIVE, SST2_LABELS, read_sst2
from adaptls.data.tokenizer import MAX_VOCAB_SIZE, MIN_VOCAB_SIZE, PAD, load_or_train_bpe

log = logging.getLogger(__name__)

# The tokenizer's padding token comes first in its vocabulary; models mask this id.
PAD_ID = 0
# emoji_lang: the train/test split is fixed (not ``seed``), so every run is tested on the
# same emoji.
EMOJI_TEST_FRACTION = 0.2
EMOJI_TEST_SPLIT_SEED = 0


@dataclass(frozen=True)
class TextCorpus:
    """A labelled text set: its class names, the file to fetch (None: nothing to download)
    and how to read ``(train_texts, train_labels, test_texts, test_labels)`` from that
    file's verified path (None when there is no file)."""

    labels: tuple[str, ...]
    remote: RemoteFile | None
    read: Callable[[Path | None], tuple[list[str], Tensor, list[str], Tensor]]


def read_emoji_lang(path: Path | None = None) -> tuple[list[str], Tensor, list[str], Tensor]:
    """The emoji names, split by emoji: a fixed :data:`EMOJI_TEST_FRACTION` of them (seed
    :data:`EMOJI_TEST_SPLIT_SEED`) with all their translations is the test set."""
    texts, labels, groups = load_emoji_names()
    generator = torch.Generator().manual_seed(EMOJI_TEST_SPLIT_SEED)
    train, test = split_by_group(groups, EMOJI_TEST_FRACTION, generator)
    return [texts[i] for i in train], labels[train], [texts[i] for i in test], labels[test]


CORPORA = {
    "emoji_lang": TextCorpus(LANGUAGES, None, read_emoji_lang),
    "sst2": TextCorpus(SST2_LABELS, SST2_ARCHIVE, read_sst2),
}


class TextClassificationDataModule(TensorDataModule):
    """Labelled texts served as ``(tokens int64 (B, T), targets int64, indices int64)``.

    ``setup`` reads the corpus, holds out validation and subsamples a long tail exactly as
    every :class:`~adaptls.data.base.TensorDataModule` does, then trains a byte-level BPE
    tokenizer (:func:`~adaptls.data.tokenizer.load_or_train_bpe`, cached in
    ``data_dir/tokenizers`` by its corpus and settings) on the texts of the final training
    split only -- validation and test text never shape the vocabulary -- and encodes every
    split. A text keeps its first ``max_length`` tokens.

    Batches are padded on the right with :data:`PAD_ID` (0) to their longest text; the
    padding mask is ``tokens != PAD_ID`` and the lengths are ``mask.sum(1)``: a text that
    would encode to the padding id (it contains the literal ``<|pad|>``) or to no token at
    all is rejected with its text in the message. ``input_shape`` is ``(max_length,)``:
    the longest a batch can be. ``vocab_size`` is the tokenizer's requested size, an upper
    bound of the ids (a small corpus may learn fewer merges), so a model can be built from
    it before any text is read.

    Args:
        corpus: ``emoji_lang`` (offline) or ``sst2`` (downloaded); see the module docstring.
        data_dir: where downloads and tokenizers are cached.
        download: allow fetching a corpus that is not cached yet.
        vocab_size: BPE vocabulary size in [258, 32000] (256 bytes + 2 special tokens).
        min_frequency: how often a pair must occur to be merged.
        max_length: tokens kept per text.
        **kwargs: the :class:`TensorDataModule` options (batch size, validation fraction,
            seed, imbalance ratio and profile, shuffle).
    """

    token_ids: ClassVar[bool] = True

    def __init__(
        self,
        *,
        corpus: str = "emoji_lang",
        data_dir: str = "~/.cache/adaptls",
        download: bool = True,
        vocab_size: int = 2000,
        min_frequency: int = 2,
        max_length: int = 64,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.corpus = check_choice("corpus", corpus, tuple(CORPORA))
        if not isinstance(data_dir, (str, Path)) or not str(data_dir):
            raise ValueError(f"data_dir must be a non-empty path, got {data_dir!r}")
        self.data_dir = Path(data_dir).expanduser()
        self.download = check_bool("download", download)
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)
        if self.vocab_size > MAX_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be an int <= {MAX_VOCAB_SIZE}, got {vocab_size!r}")
        self.min_frequency = check_int("min_frequency", min_frequency, minimum=1)
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.labels = CORPORA[self.corpus].labels
        self.num_classes = len(self.labels)
        self.input_shape = (self.max_length,)
        self.pad_id = PAD_ID
        self.tokenizer = None
        self._texts: dict[str, list[str]] | None = None

    def prepare_data(self) -> None:
        remote = CORPORA[self.corpus].remote
        if remote is not None:
            fetch(remote, self.data_dir, download=self.download)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Row numbers into the texts (tokenised later, in :meth:`setup`) and the labels."""
        corpus = CORPORA[self.corpus]
        path = None
        if corpus.remote is not None:
            path = self.data_dir / corpus.remote.filename
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} does not exist: call prepare_data() before setup()"
                )
            path = fetch(corpus.remote, self.data_dir, download=False)  # verifies the checksum
        train_texts, y_train, test_texts, y_test = corpus.read(path)
        self._texts = {"train": train_texts, "test": test_texts}
        return torch.arange(len(train_texts)), y_train, torch.arange(len(test_texts)), y_test

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        super().setup(stage)  # splits and subsamples the row numbers
        assert self._texts is not None
        train_texts, test_texts = self._texts["train"], self._texts["test"]
        fitted = [train_texts[row] for row in self.train_dataset.tensors[0].tolist()]
        self.tokenizer = load_or_train_bpe(
            fitted, self.vocab_size, self.data_dir / "tokenizers", min_frequency=self.min_frequency
        )
        if self.tokenizer.pad_id != PAD_ID:
            raise RuntimeError(f"the tokenizer's padding id is {self.tokenizer.pad_id}, not 0")
        self.train_dataset = self._encode(self.train_dataset, train_texts, "train")
        self.val_dataset = self._encode(self.val_dataset, train_texts, "val")
        self.test_dataset = self._encode(self.test_dataset, test_texts, "test")
        self._texts = None

    def collate_fn(self) -> PadBatch:
        return PadBatch(PAD_ID)

    def _encode(self, dataset: TensorDataset, texts: list[str], split: str) -> TensorDataset:
        """The dataset with its row numbers replaced by right-padded token ids (N, T)."""
        rows, labels, indices = dataset.tensors
        encoded = self.tokenizer.encode_batch([texts[row] for row in rows.tolist()])
        for row, ids in zip(rows.tolist(), encoded, strict=True):
            if not ids or PAD_ID in ids:  # the literal "<|pad|>" encodes to the padding id
                problem = (
                    "encodes to no token" if not ids else f"contains the padding token {PAD!r}"
                )
                raise ValueError(f"{self.corpus} {split}: the text {texts[row]!r} {problem}")
        lengths = [len(ids) for ids in encoded]
        truncated = sum(n > self.max_length for n in lengths)
        if truncated:
            log.info(
                "%s %s: %d of %d texts cut to max_length=%d tokens",
                self.corpus, split, truncated, len(lengths), self.max_length,
            )  # fmt: skip
        width = min(max(lengths), self.max_length)
        tokens = torch.full((len(encoded), width), PAD_ID, dtype=torch.int64)
        for i, ids in enumerate(encoded):
            ids = ids[:width]
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return TensorDataset(tokens, labels, indices)


class PadBatch:
    """Collate ``(tokens (T,), label, index)`` samples, padded on the right with ``pad_id``
    to a common length T, into ``(tokens (B, T_b), labels, indices)`` with T_b the longest
    text of the batch (columns of padding only are dropped).

    A class rather than a closure so that loader workers can pickle it.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, ...]:
        tokens, labels, indices = collate_tuple(samples)
        longest = int((tokens != self.pad_id).sum(1).max())
        return tokens[:, :longest], labels, indices
