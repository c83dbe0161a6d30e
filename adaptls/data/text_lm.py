"""Token-level language modelling data: documents -> BPE tokens -> next-token blocks.

Pipeline (:class:`TextLMDataModule`):

1. **Documents**, split *by document* so that no text is shared between splits:
   ``corpus=pydoc`` (default; Python's bundled documentation topics) or ``stdlib`` (the
   standard library's source files), both on every machine (:mod:`adaptls.data.corpora`)
   and split with a generator seeded by ``split_seed`` into ``1 - val_fraction -
   test_fraction`` / ``val_fraction`` / ``test_fraction`` of the documents;
   ``wikitext2`` / ``wikitext103`` (downloaded, :mod:`adaptls.data.wikitext`) keep their
   official article split.
2. **Tokens**: a byte-level BPE tokenizer trained on the *training* documents only, cached
   by corpus and settings (:mod:`adaptls.data.tokenizer`); ``PAD`` = 0, ``EOS`` = 1.
3. **Stream**: each split's documents concatenated, each one preceded by ``EOS`` and the
   last one followed by it: ``EOS d_1 EOS d_2 ... EOS d_n EOS``. So every document token,
   its first included, is predicted, and so is the end of every document; the leading
   ``EOS`` is context only. Context flows across document boundaries within a block (the
   usual practice for GPT-style training; ``EOS`` marks the boundary).
4. **Blocks** (:func:`next_token_blocks`), the shifted-label convention: the stream s is
   cut into blocks of ``context_length + 1`` tokens that overlap by one,
   ``b_j = s[jT : jT + T + 1]``; inputs are ``b_j[:-1]`` and targets ``b_j[1:]``, so
   ``targets[j, t]`` is the token that follows ``inputs[j, t]``, and every stream token
   after the first is a target exactly once. The last block is padded: inputs with
   ``PAD``, targets with ``IGNORE_INDEX`` (-100, which the losses and metrics skip).
   Models take inputs and targets as they come; nothing shifts again.

Batches are ``(inputs int64 (B, T), targets int64 (B, T), indices int64 (B, T))``;
``indices[j, t] = j * T + t``, the target's position in its split (strategies with
per-sample state see one sample per token). Facts: ``num_classes`` = ``vocab_size`` (known
before any data is read, as models are built first; if a small corpus yields fewer tokens,
the rest are classes never seen, with a warning), ``input_shape`` = ``(context_length,)``,
``class_counts`` = training target counts per token id, ``num_train`` = training target
positions (padding included).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from adaptls.checks import check_bool, check_choice, check_fraction, check_int
from adaptls.data.base import TensorDataModule
from adaptls.data.corpora import pydoc_topics, stdlib_sources
from adaptls.data.tokenizer import BPETokenizer, check_vocab_size, load_or_train_bpe
from adaptls.data.wikitext import WIKITEXT_ARCHIVES, load_wikitext

log = logging.getLogger(__name__)

LOCAL_CORPORA = ("pydoc", "stdlib")
CORPORA = (*LOCAL_CORPORA, *WIKITEXT_ARCHIVES)
IGNORE_INDEX = -100
SPLITS = ("train", "val", "test")


class TextLMDataModule(TensorDataModule):
    """Next-token prediction on a text corpus (see the module docstring for the pipeline).

    Args:
        corpus: ``pydoc`` (default), ``stdlib``, ``wikitext2`` or ``wikitext103``.
        vocab_size: BPE vocabulary size in [258, 32000], special tokens included; the
            model's number of classes.
        min_frequency: how often a pair must occur in the training text to be merged.
        context_length: T, tokens per block (the model's context).
        data_dir: downloads (WikiText) and the tokenizer cache (``<data_dir>/tokenizers``).
        download: allow downloading a corpus that needs it (only WikiText does).
        val_fraction, test_fraction: shares of the documents held out (local corpora;
            at least one document each).
        split_seed: seeds the document split, kept apart from ``seed`` (shuffling) so that
            every seed of a study trains one tokenizer and tests on the same documents.
        batch_size, num_workers, seed, shuffle: as in
            :class:`~adaptls.data.base.TensorDataModule`.
    """

    token_level: ClassVar[bool] = True
    token_ids: ClassVar[bool] = True

    def __init__(
        self,
        *,
        corpus: str = "pydoc",
        vocab_size: int = 4096,
        min_frequency: int = 2,
        context_length: int = 128,
        data_dir: str | os.PathLike[str] = "~/.cache/adaptls",
        download: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        for option in ("imbalance_ratio", "imbalance_profile"):
            if option in kwargs:
                raise ValueError(f"{option} does not apply to language modelling (no classes)")
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.corpus = check_choice("corpus", corpus, CORPORA)
        self.vocab_size = check_vocab_size(vocab_size)
        self.min_frequency = check_int("min_frequency", min_frequency, minimum=1)
        self.context_length = check_int("context_length", context_length, minimum=1)
        self.data_dir = Path(data_dir).expanduser()
        self.download = check_bool("download", download)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 (documents are left to train), "
                f"got {self.val_fraction} + {self.test_fraction}"
            )
        self.split_seed = check_int("split_seed", split_seed, minimum=0)
        self.num_classes = self.vocab_size
        self.input_shape = (self.context_length,)
        self.tokenizer: BPETokenizer | None = None

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        if self.corpus in WIKITEXT_ARCHIVES:
            load_wikitext(self.corpus, self.data_dir, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        documents = self.documents()
        self.tokenizer = load_or_train_bpe(
            documents["train"],
            self.vocab_size,
            self.data_dir / "tokenizers",
            min_frequency=self.min_frequency,
        )
        if self.tokenizer.vocab_size < self.vocab_size:
            log.warning(
                "the %s training text yields %d BPE tokens at min_frequency=%d, fewer than "
                "vocab_size=%d: ids %d..%d are never used (set data.vocab_size=%d to drop them)",
                self.corpus,
                self.tokenizer.vocab_size,
                self.min_frequency,
                self.vocab_size,
                self.tokenizer.vocab_size,
                self.vocab_size - 1,
                self.tokenizer.vocab_size,
            )
        datasets = {}
        for split in SPLITS:
            ids = self.tokenizer.encode_batch(documents[split])
            inputs, targets = next_token_blocks(
                ids, self.context_length, self.tokenizer.eos_id, self.tokenizer.pad_id
            )
            positions = torch.arange(targets.numel()).view_as(targets)
            datasets[split] = TensorDataset(inputs, targets, positions)
            log.info(
                "%s %s: %d documents, %d target tokens, %d blocks of %d",
                self.corpus,
                split,
                len(documents[split]),
                int((targets != IGNORE_INDEX).sum()),
                len(targets),
                self.context_length,
            )
        self.train_dataset, self.val_dataset, self.test_dataset = (datasets[s] for s in SPLITS)

    # ------------------------------------------------------------------ data
    def documents(self) -> dict[str, list[str]]:
        """``{"train", "val", "test": [document, ...]}`` of the corpus, split by document."""
        if self.corpus in WIKITEXT_ARCHIVES:
            return load_wikitext(self.corpus, self.data_dir, download=self.download)
        texts = list((pydoc_topics() if self.corpus == "pydoc" else stdlib_sources()).values())
        generator = torch.Generator().manual_seed(self.split_seed)
        parts = split_documents(len(texts), self.val_fraction, self.test_fraction, generator)
        return {split: [texts[i] for i in part] for split, part in zip(SPLITS, parts, strict=True)}

    # ------------------------------------------------------------------ data facts
    @property
    def class_counts(self) -> list[int]:
        """Occurrences of each token id as a training target (``IGNORE_INDEX`` left out)."""
        targets = self._require(self.train_dataset).tensors[1]
        counted = targets[targets != IGNORE_INDEX]
        return torch.bincount(counted, minlength=self.num_classes).tolist()

    @property
    def num_train(self) -> int:
        """Training target positions (blocks x context_length): the range of ``indices``."""
        return self._require(self.train_dataset).tensors[1].numel()


def split_documents(
    n: int, val_fraction: float, test_fraction: float, generator: torch.Generator
) -> tuple[list[int], list[int], list[int]]:
    """Indices of n documents dealt into (train, val, test) by a seeded permutation:
    ``round(fraction * n)`` documents for val and test (at least one each), the rest for
    train (at least one). Each part is sorted (documents keep their corpus order)."""
    n_val = max(1, round(val_fraction * n))
    n_test = max(1, round(test_fraction * n))
    if n - n_val - n_test < 1:
        raise ValueError(
            f"{n} documents cannot be split into train, val ({n_val}) and test ({n_test}) "
            "with at least one document each"
        )
    order = torch.randperm(n, generator=generator).tolist()
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    return sorted(train), sorted(val), sorted(test)


def next_token_blocks(
    documents: Sequence[Sequence[int]],
    context_length: int,
    eos_id: int,
    pad_id: int,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """(inputs, targets), each (n_blocks, T) int64, of the stream ``EOS d_1 EOS ... d_n EOS``
    (empty documents skipped): ``targets[j, t]`` is the stream token after ``inputs[j, t]``;
    positions past the stream's end hold ``pad_id`` (inputs) and ``ignore_index`` (targets).
    """
    stream = [eos_id]
    for ids in documents:
        if len(ids):
            stream.extend(ids)
            stream.append(eos_id)
    if len(stream) < 2:
        raise ValueError("no tokens to model: every document is empty")
    t = context_length
    blocks = math.ceil((len(stream) - 1) / t)
    padded = torch.full((blocks * t + 1,), pad_id, dtype=torch.long)
    padded[: len(stream)] = torch.tensor(stream, dtype=torch.long)
    inputs = padded[:-1].view(blocks, t).clone()
    targets = padded[1:].clone()
    targets[len(stream) - 1 :] = ignore_index  # no next token there
    return inputs, targets.view(blocks, t)
