"""Machine translation data: sentence pairs -> joint BPE -> teacher-forced token batches.

Pipeline (:class:`TextMTDataModule`):

1. **Pairs**: ``corpus=cldr`` (default, no download), human-translated CLDR names of a
   language pair (:mod:`adaptls.data.cldr_pairs`), split *by source string* with a
   generator seeded by ``split_seed``: every distinct source goes, with all its
   translations, to one of train / val / test, so no test source is seen in training.
   Two real corpora, downloaded into ``data_dir`` by :meth:`~TextMTDataModule.prepare_data`
   when chosen, keep their official splits (``val_fraction``, ``test_fraction`` and
   ``split_seed`` do not apply): ``iwslt14`` (de-en / en-de, fairseq's preparation:
   tokenised, lower-cased, :mod:`adaptls.data.iwslt14`; verified against the user's
   ``sha256``, as none is published) and ``wmt14`` (de-en / en-de, News Commentary v9,
   newstest2013, newstest2014, raw text, :mod:`adaptls.data.wmt14`; pinned).
2. **Tokens**: one byte-level BPE for both languages (a joint vocabulary, so source and
   target embeddings can be shared), trained on the *training* pairs only and cached by
   corpus and settings (:mod:`adaptls.data.tokenizer`); ``PAD`` = 0, ``EOS`` = 1.
3. **Rows**, fairseq's layout: source ``s EOS``; decoder input ``EOS t`` (EOS doubles as
   the beginning of the target, as in fairseq's ``prev_output_tokens``); target ``t EOS``.
   Each is right-padded to ``max_length`` (inputs with ``PAD``, targets with
   ``IGNORE_INDEX`` -100, which the losses and metrics skip); pairs with a side longer than
   that are dropped, and the count is logged.

Batches are ``(inputs int64 (B, 2, W), targets int64 (B, L), indices int64 (B, L))``:
``inputs[:, 0]`` the source, ``inputs[:, 1]`` the decoder input, ``targets[j, t]`` the
token that follows ``inputs[j, 1, t]``; ``indices`` number the split's target tokens
0, 1, ... in row-major order (one sample per target token, as in language modelling;
padding positions hold 0, their targets being ignored). W <= L is the batch's longest row (source or
target): the columns past it, padding in every row, are cut when the batch is collated
(attention costs the square of the length, and most names are far shorter than L). Facts: ``num_classes`` = ``vocab_size``,
``input_shape`` = ``(2, max_length)``, ``class_counts`` = training target counts per token
id (so the tokens with a count are the target language's side of the joint vocabulary),
``num_train`` = training target tokens (the range of ``indices``).

:meth:`TextMTDataModule.translation_task` hands decoding what it needs for a split (the
source rows, the reference texts, the detokeniser): the callback that computes BLEU and
chrF (:class:`adaptls.callbacks.TranslationMetrics`) looks for that method, so any
datamodule that has it is evaluated by translation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from adaptls.checks import check_choice, check_fraction, check_int
from adaptls.data import wmt14
from adaptls.data.base import TensorDataModule, collate_tuple
from adaptls.data.cldr_pairs import LANGUAGES, cldr_pairs
from adaptls.data.download import fetch
from adaptls.data.iwslt14 import (
    IWSLT14_LANGUAGES,
    check_iwslt14_sha256,
    iwslt14_archive,
    load_iwslt14,
    require_sacremoses,
)
from adaptls.data.text_lm import IGNORE_INDEX, SPLITS, split_documents
from adaptls.data.tokenizer import BPETokenizer, check_vocab_size, load_or_train_bpe
from adaptls.data.wmt14 import WMT14_LANGUAGES, load_wmt14

log = logging.getLogger(__name__)

# Each corpus and the languages it has (any two make a pair).
CORPUS_LANGUAGES = {"cldr": LANGUAGES, "iwslt14": IWSLT14_LANGUAGES, "wmt14": WMT14_LANGUAGES}
CORPORA = tuple(CORPUS_LANGUAGES)
# adaptls' BPE tokenizers give PAD the id 0 (adaptls.data.tokenizer).
PAD_ID = 0
# The two rows of an input: the source and the decoder input (the target shifted right).
SOURCE, DECODER_INPUT = 0, 1


@dataclass(frozen=True)
class TranslationTask:
    """What decoding a split needs: ``sources`` (N, L) int64 (``s EOS`` right-padded with
    ``pad_id``), the ``source_texts`` and ``references`` (one reference text per row), the
    special ids, and ``detokenize`` (token ids -> text, special tokens dropped)."""

    sources: Tensor
    source_texts: list[str]
    references: list[str]
    pad_id: int
    bos_id: int
    eos_id: int
    detokenize: Callable[[Sequence[int]], str]


class TextMTDataModule(TensorDataModule):
    """Translation of ``pair`` (``"en-de"``: English to German) on a parallel corpus (see
    the module docstring for the pipeline).

    Args:
        corpus: ``cldr`` (CLDR names from installed packages, no download), ``iwslt14`` or
            ``wmt14`` (downloaded into ``data_dir``).
        pair: ``<source>-<target>`` language codes (ISO 639-1) the corpus has.
        sha256: for ``iwslt14`` only, and required there: the SHA-256 (hex) of a copy of
            fairseq's ``de-en.tgz`` the user trusts; the download is verified against it.
        vocab_size: joint BPE vocabulary size in [258, 32000], special tokens included.
        min_frequency: how often a pair of symbols must occur to be merged.
        max_length: L, tokens per side (the end token included); longer pairs are dropped.
        data_dir: downloads and the tokenizer cache (``<data_dir>/tokenizers``).
        val_fraction, test_fraction: shares of the distinct source strings held out (cldr).
        split_seed: seeds the cldr split, kept apart from ``seed`` (shuffling) so that every
            seed of a study trains one tokenizer and tests on the same sentences.
        batch_size, num_workers, seed, shuffle: as in
            :class:`~adaptls.data.base.TensorDataModule`.
    """

    token_level: ClassVar[bool] = True
    token_ids: ClassVar[bool] = True

    def __init__(
        self,
        *,
        corpus: str = "cldr",
        pair: str = "en-de",
        sha256: str | None = None,
        vocab_size: int = 2000,
        min_frequency: int = 2,
        max_length: int = 32,
        data_dir: str | os.PathLike[str] = "~/.cache/adaptls",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        for option in ("imbalance_ratio", "imbalance_profile"):
            if option in kwargs:
                raise ValueError(f"{option} does not apply to translation (no classes)")
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.corpus = check_choice("corpus", corpus, CORPORA)
        self.source_language, self.target_language = check_pair(pair, self.corpus)
        self.pair = pair
        if self.corpus == "iwslt14":
            self.sha256: str | None = check_iwslt14_sha256(sha256)
            require_sacremoses()
        elif sha256 is not None:
            raise ValueError(
                f"sha256 is for corpus=iwslt14 only (the other downloads are pinned), "
                f"got sha256={sha256!r} with corpus={self.corpus}"
            )
        else:
            self.sha256 = None
        self.vocab_size = check_vocab_size(vocab_size)
        self.min_frequency = check_int("min_frequency", min_frequency, minimum=1)
        self.max_length = check_int("max_length", max_length, minimum=2)
        self.data_dir = Path(data_dir).expanduser()
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 (sources are left to train), "
                f"got {self.val_fraction} + {self.test_fraction}"
            )
        self.split_seed = check_int("split_seed", split_seed, minimum=0)
        self.num_classes = self.vocab_size
        self.input_shape = (2, self.max_length)
        self.tokenizer: BPETokenizer | None = None
        self.pairs: dict[str, list[tuple[str, str]]] = {}

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Downloads (once, verified) the archives of ``iwslt14`` and ``wmt14``; ``cldr``
        ships with installed packages."""
        if self.corpus == "iwslt14":
            fetch(iwslt14_archive(self._sha256()), self.data_dir)
        elif self.corpus == "wmt14":
            for remote in (wmt14.NEWS_COMMENTARY_V9, wmt14.WMT_DEV):
                fetch(remote, self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        splits = self.split_pairs()
        self.tokenizer = load_or_train_bpe(
            [text for pair in splits["train"] for text in pair],
            self.vocab_size,
            self.data_dir / "tokenizers",
            min_frequency=self.min_frequency,
        )
        datasets = {}
        for split in SPLITS:
            inputs, targets, kept = self.encode_pairs(splits[split])
            dropped = len(splits[split]) - len(kept)
            self.pairs[split] = kept
            datasets[split] = TensorDataset(inputs, targets, target_numbers(targets))
            log.info(
                "%s %s %s: %d pairs, %d target tokens%s",
                self.corpus,
                self.pair,
                split,
                len(kept),
                int((targets != IGNORE_INDEX).sum()),
                f" ({dropped} longer than max_length={self.max_length} dropped)" if dropped else "",
            )
        self.train_dataset, self.val_dataset, self.test_dataset = (datasets[s] for s in SPLITS)

    # ------------------------------------------------------------------ data
    def split_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """``{"train", "val", "test": [(source, target), ...]}``: the official split of a
        downloaded corpus, the cldr pairs split by source string."""
        if self.corpus != "cldr":
            return self.official_pairs()
        pairs = cldr_pairs(self.source_language, self.target_language)
        sources = sorted({source for source, _ in pairs})
        generator = torch.Generator().manual_seed(self.split_seed)
        parts = split_documents(len(sources), self.val_fraction, self.test_fraction, generator)
        where = {sources[i]: split for split, part in zip(SPLITS, parts, strict=True) for i in part}
        return {split: [p for p in pairs if where[p[0]] == split] for split in SPLITS}

    def official_pairs(self) -> dict[str, list[tuple[str, str]]]:
        """The (de, en) splits of ``iwslt14`` / ``wmt14``, oriented as ``pair``."""
        if self.corpus == "iwslt14":
            splits = load_iwslt14(self.data_dir, self._sha256())
        else:
            splits = load_wmt14(self.data_dir)
        if self.source_language == "de":
            return splits
        return {split: [(en, de) for de, en in pairs] for split, pairs in splits.items()}

    def _sha256(self) -> str:
        assert self.sha256 is not None  # checked in __init__ for iwslt14
        return self.sha256

    def encode_pairs(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[Tensor, Tensor, list[tuple[str, str]]]:
        """``(inputs (N, 2, L), targets (N, L), kept pairs)`` of the pairs that fit L."""
        tok = self._tokenizer()
        sources = tok.encode_batch([s for s, _ in pairs])
        targets = tok.encode_batch([t for _, t in pairs])
        length = self.max_length
        rows = [
            i
            for i in range(len(pairs))
            if len(sources[i]) + 1 <= length and len(targets[i]) + 1 <= length
        ]
        x = torch.full((len(rows), 2, length), tok.pad_id, dtype=torch.long)
        y = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for row, i in enumerate(rows):
            source, target = sources[i] + [tok.eos_id], targets[i]
            x[row, SOURCE, : len(source)] = torch.tensor(source)
            x[row, DECODER_INPUT, : len(target) + 1] = torch.tensor([tok.eos_id, *target])
            y[row, : len(target) + 1] = torch.tensor([*target, tok.eos_id])
        return x, y, [pairs[i] for i in rows]

    def collate_fn(self) -> Callable[[list[Any]], tuple[Tensor, ...]]:
        """Stacks samples, then cuts the columns that are padding in every row."""
        return collate_trimmed

    def translation_task(self, split: str = "test") -> TranslationTask:
        """The sources, references and detokeniser of ``split`` (after :meth:`setup`)."""
        split = check_choice("split", split, SPLITS)
        dataset = self._require(
            {"train": self.train_dataset, "val": self.val_dataset, "test": self.test_dataset}[split]
        )
        tok = self._tokenizer()
        return TranslationTask(
            sources=dataset.tensors[0][:, SOURCE],
            source_texts=[s for s, _ in self.pairs[split]],
            references=[t for _, t in self.pairs[split]],
            pad_id=tok.pad_id,
            bos_id=tok.eos_id,
            eos_id=tok.eos_id,
            detokenize=tok.decode,
        )

    def _tokenizer(self) -> BPETokenizer:
        if self.tokenizer is None:
            raise RuntimeError("TextMTDataModule has no tokenizer yet: call setup() first")
        return self.tokenizer

    # ------------------------------------------------------------------ data facts
    @property
    def class_counts(self) -> list[int]:
        """Occurrences of each token id as a training target (``IGNORE_INDEX`` left out):
        the target language's side of the joint vocabulary has the non-zero counts."""
        targets = self._require(self.train_dataset).tensors[1]
        counted = targets[targets != IGNORE_INDEX]
        return torch.bincount(counted, minlength=self.num_classes).tolist()

    @property
    def num_train(self) -> int:
        """Training target tokens (padding left out): the range of ``indices``."""
        return int((self._require(self.train_dataset).tensors[1] != IGNORE_INDEX).sum())


def check_pair(pair: str, corpus: str = "cldr") -> tuple[str, str]:
    """``"en-de"`` -> ``("en", "de")``, two different languages of ``corpus``."""
    languages = CORPUS_LANGUAGES[corpus]
    parts = pair.split("-") if isinstance(pair, str) else []
    if len(parts) != 2 or parts[0] == parts[1] or not set(parts) <= set(languages):
        allowed = (
            f"two different languages of {', '.join(languages)} (e.g. en-de)"
            if len(languages) > 2
            else " or ".join(f"{a}-{b}" for a in languages for b in languages if a != b)
        )
        raise ValueError(
            f"pair must be <source>-<target> of corpus {corpus}: {allowed}, got {pair!r}"
        )
    return parts[0], parts[1]


def collate_trimmed(samples: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """``(inputs (B, 2, W), targets (B, W), indices (B, W))``: the stacked rows cut to W,
    the last column where some row holds a token (source, decoder input or target)."""
    x, y, indices = collate_tuple(samples)
    used = torch.cat([(x != PAD_ID).any(1), y != IGNORE_INDEX]).any(0).nonzero()
    width = int(used[-1]) + 1 if len(used) else 1
    return x[..., :width], y[:, :width], indices[:, :width]


def target_numbers(targets: Tensor) -> Tensor:
    """(N, L) int64: each target token's number among the split's target tokens, row-major
    (0, 1, ...); 0 at padding (a valid index whose target is ignored)."""
    real = targets != IGNORE_INDEX
    numbers = real.flatten().cumsum(0).view_as(targets) - 1
    return torch.where(real, numbers, 0)
