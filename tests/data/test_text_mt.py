"""data=text_mt: the CLDR parallel corpus, its split by source, the joint BPE trained on the
training pairs only, fairseq's row layout with -100 target padding, trimmed batches."""

from __future__ import annotations

import pytest
import torch

from adaptls.data import TextMTDataModule
from adaptls.data.cldr_pairs import cldr_pairs
from adaptls.data.text_mt import collate_trimmed
from adaptls.data.tokenizer import cache_key

IGNORE = -100


@pytest.fixture(scope="module")
def dm(tmp_path_factory) -> TextMTDataModule:
    module = TextMTDataModule(vocab_size=400, batch_size=16, data_dir=tmp_path_factory.mktemp("mt"))
    module.setup()
    return module


def test_the_corpus_is_distinct_translated_pairs():
    pairs = cldr_pairs("en", "de")
    assert pairs == sorted(set(pairs))
    assert all(s != t and s and t for s, t in pairs)
    # emoji names and babel's display names both contribute
    assert ("thumbs up", "daumen hoch") in pairs
    assert ("Switzerland", "Schweiz") in pairs
    assert len(pairs) > 2000
    assert len(cldr_pairs("en", "ja")) > 2000  # a distant pair


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("en-xx", "pair must be <source>-<target>"),
        ("de-de", "two different"),
        ("ende", "e.g. en-de"),
    ],
)
def test_a_bad_pair_is_refused_naming_the_choices(pair, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TextMTDataModule(pair=pair, data_dir=tmp_path)


def test_splits_share_no_source_string(dm):
    sources = {split: {s for s, _ in dm.pairs[split]} for split in ("train", "val", "test")}
    assert not sources["train"] & sources["test"]
    assert not sources["train"] & sources["val"]
    assert not sources["val"] & sources["test"]
    assert len(dm.pairs["test"]) > 200


def test_the_tokenizer_is_trained_on_the_training_pairs_only(dm):
    train_texts = [text for pair in dm.split_pairs()["train"] for text in pair]
    key = cache_key(train_texts, vocab_size=400, min_frequency=2)
    assert dm.tokenizer.path.name == f"bpe-400-{key[:16]}.json"


def test_rows_follow_fairseqs_layout(dm):
    x, y, _ = dm.train_dataset.tensors
    tok = dm.tokenizer
    assert x.shape[1:] == (2, dm.max_length) and y.shape[1:] == (dm.max_length,)
    for row in range(5):
        source, target = dm.pairs["train"][row]
        n = len(tok.encode(target)) + 1
        assert y[row, :n].tolist() == [*tok.encode(target), tok.eos_id]
        assert (y[row, n:] == IGNORE).all()
        # decoder input: the end token, then the target shifted right
        assert x[row, 1, :n].tolist() == [tok.eos_id, *y[row, : n - 1].tolist()]
        assert (x[row, 1, n:] == tok.pad_id).all()
        m = len(tok.encode(source)) + 1
        assert x[row, 0, :m].tolist() == [*tok.encode(source), tok.eos_id]
        assert tok.decode(x[row, 0, :m].tolist()) == source
    assert dm.class_counts[tok.pad_id] == 0 and dm.class_counts[tok.eos_id] == len(y)
    assert dm.input_shape == (2, dm.max_length) and dm.num_classes == 400


def test_indices_number_the_target_tokens(dm):
    _, y, indices = dm.train_dataset.tensors
    real = y != IGNORE
    assert torch.equal(indices[real], torch.arange(int(real.sum())))
    assert (indices[~real] == 0).all()
    assert dm.num_train == int(real.sum()) == sum(dm.class_counts)


def test_batches_are_cut_to_their_longest_row(dm):
    samples = [dm.train_dataset[i] for i in range(8)]
    x, y, indices = collate_trimmed(samples)
    width = x.shape[-1]
    assert width < dm.max_length
    assert y.shape == indices.shape == (8, width)
    full_x = torch.stack([s[0] for s in samples])
    full_y = torch.stack([s[1] for s in samples])
    # what is cut is padding everywhere; the last column kept holds a token somewhere
    assert (full_x[..., width:] == 0).all() and (full_y[:, width:] == IGNORE).all()
    assert (full_x[..., width - 1] != 0).any() or (full_y[:, width - 1] != IGNORE).any()
    assert torch.equal(x, full_x[..., :width]) and torch.equal(y, full_y[:, :width])
    assert torch.equal(indices, torch.stack([s[2] for s in samples])[:, :width])


def test_the_translation_task_pairs_sources_with_their_references(dm):
    task = dm.translation_task("test")
    assert len(task.sources) == len(task.references) == len(dm.pairs["test"])
    for row in (0, 7):
        assert task.detokenize(task.sources[row].tolist()) == task.source_texts[row]
    assert task.bos_id == task.eos_id == dm.tokenizer.eos_id
    with pytest.raises(ValueError, match="split must be one of"):
        dm.translation_task("dev")
