"""The byte-level BPE tokenizer: exact round trip, special ids, cache keyed by corpus and settings."""

from __future__ import annotations

import pydoc_data.topics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.data import tokenizer as tokenizer_module
from adaptls.data.tokenizer import (
    EOS,
    PAD,
    BPETokenizer,
    cache_key,
    load_or_train_bpe,
)

TEXTS = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)[:12]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> BPETokenizer:
    return load_or_train_bpe(TEXTS, 400, tmp_path_factory.mktemp("bpe"))


def test_special_tokens_come_first_and_ids_fill_the_vocabulary(trained):
    assert (trained.pad_id, trained.eos_id) == (0, 1)
    assert trained.tokenizer.id_to_token(0) == PAD and trained.tokenizer.id_to_token(1) == EOS
    assert trained.vocab_size == 400
    ids = [i for row in trained.encode_batch(TEXTS) for i in row]
    assert min(ids) >= 2 and max(ids) < trained.vocab_size  # text never encodes to PAD/EOS
    # Merges were learned: the training text takes far fewer tokens than bytes.
    assert len(ids) < 0.6 * sum(len(t.encode()) for t in TEXTS)


def test_round_trip_on_training_text_and_unseen_scripts(trained):
    texts = [*TEXTS[:3], "  leading spaces\n\ttabs\r\n", "naïve café ☕ 東京 🙂", ""]
    for text, ids in zip(texts, trained.encode_batch(texts), strict=True):
        assert trained.decode(ids) == text
        assert trained.encode(text) == ids


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_on_any_string(trained, text):
    assert trained.decode(trained.encode(text)) == text


def test_second_call_loads_the_cache_without_training(tmp_path, monkeypatch):
    first = load_or_train_bpe(TEXTS, 300, tmp_path)
    assert first.path is not None and first.path.parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]  # no temporary left

    def refuse(*args, **kwargs):
        raise AssertionError("retrained a cached tokenizer")

    monkeypatch.setattr(tokenizer_module, "train_bpe", refuse)
    second = load_or_train_bpe(TEXTS, 300, tmp_path)
    assert second.path == first.path
    assert second.encode_batch(TEXTS) == first.encode_batch(TEXTS)


def test_corpus_and_settings_change_the_key():
    base = cache_key(TEXTS, vocab_size=400, min_frequency=2)
    assert cache_key(list(TEXTS), vocab_size=400, min_frequency=2) == base
    others = [
        cache_key(TEXTS, vocab_size=401, min_frequency=2),
        cache_key(TEXTS, vocab_size=400, min_frequency=3),
        cache_key(TEXTS[:-1], vocab_size=400, min_frequency=2),
        cache_key([*TEXTS[:-1], TEXTS[-1] + " "], vocab_size=400, min_frequency=2),
        # The same characters cut into other documents is another corpus.
        cache_key(["ab", "c"], vocab_size=400, min_frequency=2),
    ]
    assert cache_key(["a", "bc"], vocab_size=400, min_frequency=2) != others[-1]
    assert len({base, *others}) == len(others) + 1


def test_another_setting_trains_another_file(tmp_path):
    small = load_or_train_bpe(TEXTS, 300, tmp_path)
    large = load_or_train_bpe(TEXTS, 500, tmp_path)
    other = load_or_train_bpe(TEXTS[:6], 300, tmp_path)
    assert len({small.path, large.path, other.path}) == 3
    assert (small.vocab_size, large.vocab_size) == (300, 500)


def test_training_is_deterministic(tmp_path):
    a = load_or_train_bpe(TEXTS, 400, tmp_path / "a")
    b = load_or_train_bpe(TEXTS, 400, tmp_path / "b")
    assert a.tokenizer.to_str() == b.tokenizer.to_str()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 257}, "vocab_size must be an int >= 258, got 257"),
        ({"vocab_size": 32001}, "vocab_size must be an int <= 32000, got 32001"),
        ({"vocab_size": 300.0}, "vocab_size must be an int >= 258, got 300.0"),
        ({"vocab_size": 300, "min_frequency": 0}, "min_frequency must be an int >= 1, got 0"),
        ({"vocab_size": 300, "texts": "one string"}, "texts must be a sequence of strings"),
        ({"vocab_size": 300, "texts": ["", ""]}, "texts is empty"),
    ],
)
def test_bad_settings_fail_before_training(tmp_path, kwargs, match):
    kwargs = {"texts": TEXTS, **kwargs}
    with pytest.raises(ValueError, match=match):
        load_or_train_bpe(cache_dir=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
