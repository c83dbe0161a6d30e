"""Language-modelling data: shifted next-token blocks, split by document, tokenizer on train."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptls.data import TextLMDataModule
from adaptls.data import wikitext as wikitext_module
from adaptls.data.corpora import pydoc_topics, stdlib_sources
from adaptls.data.download import ChecksumError, RemoteFile
from adaptls.data.text_lm import IGNORE_INDEX, next_token_blocks, split_documents
from adaptls.data.tokenizer import cache_key
from adaptls.data.wikitext import read_wikitext, split_articles

EOS, PAD = 1, 0


def test_blocks_on_a_hand_made_stream():
    inputs, targets = next_token_blocks(
        [[5, 6, 7], [8, 9]], context_length=4, eos_id=EOS, pad_id=PAD
    )
    # stream: EOS 5 6 7 EOS 8 9 EOS (8 tokens, 7 targets) -> 2 blocks of 4, one target
    # padded; the final EOS is an input there, with no next token to predict
    assert inputs.tolist() == [[EOS, 5, 6, 7], [EOS, 8, 9, EOS]]
    assert targets.tolist() == [[5, 6, 7, EOS], [8, 9, EOS, IGNORE_INDEX]]
    assert inputs.dtype == targets.dtype == torch.long


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(2, 50), max_size=12), min_size=1, max_size=6).filter(
        lambda docs: any(docs)
    ),
    st.integers(1, 9),
)
def test_every_stream_token_after_the_first_is_the_target_of_its_predecessor_once(docs, t):
    inputs, targets = next_token_blocks(docs, t, EOS, PAD)
    stream = [EOS]
    for doc in docs:
        if doc:
            stream += [*doc, EOS]
    flat_in, flat_y = inputs.reshape(-1), targets.reshape(-1)
    counted = flat_y != IGNORE_INDEX
    assert int(counted.sum()) == len(stream) - 1
    assert flat_y[counted].tolist() == stream[1:]
    assert flat_in[counted].tolist() == stream[:-1]
    # Within a block the target at t is the input at t + 1 (the shifted-label convention),
    # and the last target of a block is the first input of the next one.
    assert torch.equal(targets[:, :-1][counted.view_as(targets)[:, :-1]],
                       inputs[:, 1:][counted.view_as(targets)[:, :-1]])  # fmt: skip
    assert torch.equal(targets[:-1, -1], inputs[1:, 0])
    # Past the last target: the final EOS as an input, then padding.
    rest = flat_in[len(stream) - 1 :].tolist()
    assert rest == [EOS, *[PAD] * (len(rest) - 1)] if rest else True
    assert not counted[len(stream) - 1 :].any()


def test_split_documents_is_a_seeded_partition():
    parts = split_documents(79, 0.1, 0.1, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [63, 8, 8]
    assert sorted(i for part in parts for i in part) == list(range(79))
    again = split_documents(79, 0.1, 0.1, torch.Generator().manual_seed(0))
    other = split_documents(79, 0.1, 0.1, torch.Generator().manual_seed(1))
    assert again == parts and other != parts
    assert [len(p) for p in split_documents(3, 0.01, 0.01, torch.Generator())] == [1, 1, 1]
    with pytest.raises(ValueError, match="2 documents cannot be split"):
        split_documents(2, 0.1, 0.1, torch.Generator())


@pytest.fixture(scope="module")
def pydoc_module(tmp_path_factory) -> TextLMDataModule:
    dm = TextLMDataModule(
        vocab_size=600, context_length=32, batch_size=4, data_dir=tmp_path_factory.mktemp("d")
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_pydoc_splits_by_document_and_tokenizes_the_training_split_only(pydoc_module):
    dm = pydoc_module
    docs = dm.documents()
    assert sum(map(len, docs.values())) == len(pydoc_topics())
    assert [len(docs[s]) for s in ("train", "val", "test")] == [63, 8, 8]
    assert not set(docs["train"]) & (set(docs["val"]) | set(docs["test"]))
    assert not set(docs["val"]) & set(docs["test"])
    key = cache_key(docs["train"], vocab_size=600, min_frequency=2)
    assert dm.tokenizer.path.name == f"bpe-600-{key[:16]}.json"
    # The split does not follow the run's seed: every seed tests on the same documents.
    other = TextLMDataModule(seed=5, data_dir=dm.data_dir)
    assert other.documents() == docs
    moved = TextLMDataModule(split_seed=1, data_dir=dm.data_dir)
    assert moved.documents()["test"] != docs["test"]


def test_batches_facts_and_counts(pydoc_module):
    dm = pydoc_module
    assert dm.num_classes == 600 and dm.input_shape == (32,)
    x, y, idx = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == idx.shape == (4, 32)
    assert x.dtype == y.dtype == idx.dtype == torch.long
    _, targets, positions = dm.train_dataset.tensors
    assert dm.num_train == targets.numel()
    assert torch.equal(positions.view(-1), torch.arange(targets.numel()))
    counts = torch.tensor(dm.class_counts)
    assert counts.shape == (600,)
    assert int(counts.sum()) == int((targets != IGNORE_INDEX).sum())
    assert counts[PAD] == 0 and counts[EOS] == 63  # one end of document per training doc
    for split in (dm.val_dataset, dm.test_dataset):
        assert int((split.tensors[1] == EOS).sum()) == 8


def test_a_corpus_too_small_for_the_vocabulary_warns(tiny_text, tmp_path, caplog):
    dm = tiny_text(vocab_size=32000, context_length=16, data_dir=tmp_path)
    dm.setup()
    assert dm.tokenizer.vocab_size < 32000
    assert f"set data.vocab_size={dm.tokenizer.vocab_size}" in caplog.text
    assert len(dm.class_counts) == 32000


def test_stdlib_sources_skip_tests_and_installed_packages(tmp_path):
    for path in ["a.py", "pkg/b.py", "test/t.py", "pkg/tests/u.py", "site-packages/x/y.py"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(f"# {path}\n".encode() + b"\xff")
    sources = stdlib_sources(tmp_path)
    assert list(sources) == ["a.py", "pkg/b.py"]
    assert sources["a.py"] == "# a.py\n\ufffd"  # a stray non-UTF-8 byte is replaced
    real = stdlib_sources()
    assert "os.py" in real and "json/decoder.py" in real
    assert not any(name.startswith("test/") for name in real)


# ---------------------------------------------------------------------- WikiText
ARTICLES = {
    "train": [" = Alpha = \n \n Alpha is first . \n \n = = History = = \n \n Old . \n",
              " = Beta = \n \n Beta @-@ two . \n"],
    "val": [" = Gamma = \n \n Gamma text . \n"],
    "test": [" = Delta = \n \n Delta text . \n", " = Epsilon = \n \n Last . \n"],
}  # fmt: skip


def make_wikitext_zip(path: Path, name: str = "wikitext-2-raw") -> RemoteFile:
    """A WikiText raw archive in the official layout (a leading blank line, as there)."""
    files = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for split, articles in ARTICLES.items():
            zf.writestr(f"{name}/{files[split]}", " \n" + "".join(articles))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return RemoteFile(path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_split_articles_cuts_at_top_level_headings_only():
    text = " \n" + "".join(ARTICLES["train"])
    articles = split_articles(text)
    assert len(articles) == 2
    assert articles[0].startswith("= Alpha =") and "= = History = =" in articles[0]
    assert articles[1].startswith("= Beta =")


def test_wikitext_is_fetched_verified_and_keeps_its_official_split(tmp_path, monkeypatch):
    remote = make_wikitext_zip(tmp_path / "server" / "wikitext-2-raw-v1.zip")
    monkeypatch.setitem(wikitext_module.WIKITEXT_ARCHIVES, "wikitext2", remote)
    data_dir = tmp_path / "data"
    dm = TextLMDataModule(corpus="wikitext2", vocab_size=270, context_length=8, data_dir=data_dir)
    dm.prepare_data()
    assert (data_dir / "wikitext-2-raw-v1.zip").is_file()
    docs = dm.documents()
    assert [len(docs[s]) for s in ("train", "val", "test")] == [2, 1, 2]
    assert docs["val"][0].startswith("= Gamma =")
    dm.setup()
    assert int((dm.test_dataset.tensors[1] == EOS).sum()) == 2
    assert read_wikitext(data_dir / "wikitext-2-raw-v1.zip") == docs


def test_wikitext_without_download_or_with_a_bad_checksum_fails_clearly(tmp_path, monkeypatch):
    remote = make_wikitext_zip(tmp_path / "server" / "wikitext-2-raw-v1.zip")
    wrong = RemoteFile(remote.url, sha256="0" * 64)
    monkeypatch.setitem(wikitext_module.WIKITEXT_ARCHIVES, "wikitext2", wrong)
    with pytest.raises(ChecksumError, match=r"expected sha256 0{64}"):
        TextLMDataModule(corpus="wikitext2", data_dir=tmp_path / "a").prepare_data()
    assert not (tmp_path / "a" / "wikitext-2-raw-v1.zip").exists()
    with pytest.raises(FileNotFoundError, match="download=false"):
        TextLMDataModule(corpus="wikitext2", data_dir=tmp_path / "b", download=False).setup()


def test_the_official_archives_are_pinned_by_sha256():
    for name, remote in wikitext_module.WIKITEXT_ARCHIVES.items():
        assert remote.checksum[0] == "sha256" and len(remote.sha256) == 64, name
        assert remote.filename == f"wikitext-{name.removeprefix('wikitext')}-raw-v1.zip"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"corpus": "enwik8"}, "corpus must be one of 'pydoc', 'stdlib', 'wikitext2'"),
        ({"vocab_size": 40000}, "vocab_size must be an int <= 32000, got 40000"),
        ({"context_length": 0}, "context_length must be an int >= 1, got 0"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must be < 1"),
        ({"test_fraction": 0}, "test_fraction must be"),
        ({"imbalance_ratio": 10.0}, "imbalance_ratio does not apply to language modelling"),
        ({"download": "no"}, "download must be true or false"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextLMDataModule(**kwargs)
