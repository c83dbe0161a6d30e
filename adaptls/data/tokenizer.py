"""A byte-level BPE tokenizer trained on a training split and cached on disk by its settings.

Byte-level BPE (GPT-2's scheme, Hugging Face ``tokenizers``): text is read as UTF-8 bytes,
each byte mapped to one of 256 base symbols, and merges are learned on top, so every
string round-trips exactly (no unknown token) whatever its script. Special tokens come
first in the vocabulary: ``PAD`` (id 0, padding, never a target) and ``EOS`` (id 1,
end of text, the separator between documents).

Train on the training split only: a tokenizer fitted on validation or test text would leak
their word statistics into the vocabulary. :func:`load_or_train_bpe` keys the cache file by
everything that decides the result -- a SHA-256 of the corpus (every text, length-prefixed
so that ``["ab", "c"]`` and ``["a", "bc"]`` differ), the vocabulary size, the minimum merge
frequency, the special tokens and the ``tokenizers`` version -- so a changed corpus or
setting trains a new tokenizer and an unchanged one is loaded, never retrained. The file is
written to a temporary name and renamed into place (atomic within one directory): a crash
or a concurrent writer never leaves a half-written tokenizer behind.

    tok = load_or_train_bpe(train_texts, vocab_size=8000, cache_dir="data/tokenizers")
    ids = tok.encode_batch(["def f(x):", "return x"])   # list[list[int]], no specials added
    tok.decode(ids[0])                                  # "def f(x):"
    tok.pad_id, tok.eos_id, tok.vocab_size              # 0, 1, <= 8000
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from adaptls.checks import atomic_write, check_int

log = logging.getLogger(__name__)

PAD = "<|pad|>"
EOS = "<|endoftext|>"
SPECIAL_TOKENS = (PAD, EOS)
# The 256 byte symbols plus the special tokens: the smallest vocabulary byte-level BPE has.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
# The vocabulary scale the fused linear loss, the token metrics and their memory bounds
# are built and tested for (a V x 4-byte row per token in evaluation).
MAX_VOCAB_SIZE = 32000
# Bump when the training recipe below changes, so old cache files are not reused.
_RECIPE_VERSION = 1


class BPETokenizer:
    """A trained byte-level BPE tokenizer: ids in ``[0, vocab_size)``, ``pad_id`` 0, ``eos_id`` 1.

    ``vocab_size`` is the size actually learned: at most the requested size, less when the
    corpus has fewer distinct merges to offer (a tiny corpus). ``path`` is its cache file.
    """

    def __init__(self, tokenizer: Tokenizer, path: Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.path = path
        self.pad_id = _token_id(tokenizer, PAD)
        self.eos_id = _token_id(tokenizer, EOS)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no special tokens added)."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens added), encoded in parallel."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; special tokens are dropped."""
        return self.tokenizer.decode(list(ids))


def load_or_train_bpe(
    texts: Sequence[str],
    vocab_size: int,
    cache_dir: str | os.PathLike[str],
    *,
    min_frequency: int = 2,
) -> BPETokenizer:
    """The byte-level BPE tokenizer of ``texts`` at these settings: loaded from ``cache_dir``
    if it was trained before, trained (and saved) otherwise.

    ``vocab_size`` in [258, 32000] counts the 256 byte symbols and the two special tokens;
    ``min_frequency`` (>= 1) is how often a pair must occur to be merged.
    """
    vocab_size = check_vocab_size(vocab_size)
    min_frequency = check_int("min_frequency", min_frequency, minimum=1)
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise ValueError("texts must be a sequence of strings (the training documents)")
    if not any(texts):
        raise ValueError("texts is empty: a tokenizer needs training text")
    key = cache_key(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    path = Path(cache_dir).expanduser() / f"bpe-{vocab_size}-{key[:16]}.json"
    if path.is_file():
        return BPETokenizer(Tokenizer.from_file(str(path)), path)
    log.info("training a byte-level BPE tokenizer (vocab_size %d) into %s", vocab_size, path)
    tokenizer = train_bpe(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    _save_atomically(tokenizer, path)
    return BPETokenizer(tokenizer, path)


def check_vocab_size(vocab_size: int) -> int:
    """A vocabulary size byte-level BPE can have here: an int in [258, 32000]."""
    vocab_size = check_int("vocab_size", vocab_size, minimum=MIN_VOCAB_SIZE)
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be an int <= {MAX_VOCAB_SIZE}, got {vocab_size}")
    return vocab_size


def train_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (no cache; see :func:`load_or_train_bpe`)."""
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a document's first word is encoded as written, so decoding
    # gives back exactly the text that was encoded.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def cache_key(texts: Iterable[str], *, vocab_size: int, min_frequency: int) -> str:
    """SHA-256 (hex) of the corpus and every setting that decides the trained tokenizer."""
    digest = hashlib.sha256()
    settings = (_RECIPE_VERSION, tokenizers.__version__, vocab_size, min_frequency, SPECIAL_TOKENS)
    digest.update(repr(settings).encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _save_atomically(tokenizer: Tokenizer, path: Path) -> None:
    with atomic_write(path, "w") as file:
        file.write(tokenizer.to_str())


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {token!r} token: it was not built by adaptls")
    return token_id
