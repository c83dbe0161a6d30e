"""Text classification data: the SST-2 archive format (tested on archives built here in
the official layout), the offline emoji-name corpus, tokenisation on the training split
only, padded batches, long tails and bad settings."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import pytest
import torch

import adaptls.data.text_cls as text_cls
from adaptls.data import TextClassificationDataModule, long_tail_counts
from adaptls.data.download import ChecksumError, RemoteFile
from adaptls.data.emoji_names import LANGUAGES, load_emoji_names, split_by_group
from adaptls.data.sst2 import SST2_ARCHIVE, parse_tsv, read_sst2
from adaptls.data.text_cls import PAD_ID, PadBatch

WORDS = ("good", "bad", "film", "plot", "actor", "scene", "music", "dull", "great", "boring")


def sst2_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` distinct lower-cased, tokenised sentences in GLUE's style, labels alternating."""
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        words = [WORDS[j] for j in torch.randint(len(WORDS), (2 + i % 5,), generator=rng)]
        # GLUE's texts keep bare quotes and a space before punctuation; the row number
        # makes every text unique.
        rows.append((f'{" ".join(words)} "{i}" , \'s it {seed}', i % 2))
    return rows


def make_sst2_archive(path: Path, train: list, dev: list, test: int = 5) -> RemoteFile:
    """An ``SST-2.zip`` in the layout of the GLUE archive (``SST-2/{train,dev,test}.tsv``,
    headers ``sentence\\tlabel`` and ``index\\tsentence``), served by a file:// URL."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def tsv(header: str, rows: list) -> str:
        return "\n".join([header, *("\t".join(map(str, row)) for row in rows)]) + "\n"

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("SST-2/", "")
        archive.writestr("SST-2/train.tsv", tsv("sentence\tlabel", train))
        archive.writestr("SST-2/dev.tsv", tsv("sentence\tlabel", dev))
        unlabelled = [(i, f"hidden label {i} .") for i in range(test)]
        archive.writestr("SST-2/test.tsv", tsv("index\tsentence", unlabelled))
        archive.writestr("SST-2/original/README.txt", "Stanford Sentiment Treebank\n")
    return RemoteFile(path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture
def sst2(tmp_path, monkeypatch):
    """A TextClassificationDataModule factory on a tiny SST-2 archive: 200 train, 40 dev."""
    train, dev = sst2_rows(200, seed=0), sst2_rows(40, seed=1)
    remote = make_sst2_archive(tmp_path / "server" / "SST-2.zip", train, dev)
    corpus = dataclasses.replace(text_cls.CORPORA["sst2"], remote=remote)
    monkeypatch.setitem(text_cls.CORPORA, "sst2", corpus)

    def build(**kwargs):
        kwargs = {"corpus": "sst2", "data_dir": str(tmp_path / "cache"), "vocab_size": 300,
                  "batch_size": 16, **kwargs}  # fmt: skip
        dm = TextClassificationDataModule(**kwargs)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    build.train, build.dev, build.remote = train, dev, remote
    return build


@pytest.fixture(scope="module")
def emoji_lang(tmp_path_factory):
    """The real offline corpus (tokenizers cached in one folder for the module)."""
    cache, built = tmp_path_factory.mktemp("cache"), {}

    def build(fresh=False, **kwargs):
        """A datamodule set up with these settings; the same object for the same settings
        unless ``fresh``."""
        key = tuple(sorted(kwargs.items()))
        if fresh or key not in built:
            dm = TextClassificationDataModule(data_dir=str(cache), vocab_size=500, **kwargs)
            dm.prepare_data()
            dm.setup()
            if fresh:
                return dm
            built[key] = dm
        return built[key]

    return build


def decoded(dm, dataset) -> list[str]:
    tokens = dataset.tensors[0]
    return [dm.tokenizer.decode([t for t in row if t != PAD_ID]) for row in tokens.tolist()]


# ------------------------------------------------------------------------------ SST-2
def test_sst2_archive_constants_are_the_published_ones():
    assert SST2_ARCHIVE.url == "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
    assert SST2_ARCHIVE.checksum == (
        "sha256",
        "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
    )
    assert SST2_ARCHIVE.md5 == "9f81648d4199384278b86e315dac217c"


def test_read_sst2_parses_the_official_layout(tmp_path):
    train, dev = sst2_rows(30, seed=0), sst2_rows(6, seed=1)
    path = tmp_path / "SST-2.zip"
    make_sst2_archive(path, train, dev)
    train_texts, train_labels, test_texts, test_labels = read_sst2(path)
    assert train_texts == [text for text, _ in train]  # quotes and spacing kept as written
    assert train_labels.tolist() == [label for _, label in train]
    assert train_labels.dtype == torch.int64
    # GLUE hides the test labels: the labelled dev set is the test set
    assert (test_texts, test_labels.tolist()) == ([t for t, _ in dev], [y for _, y in dev])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("index\tsentence\n0\tfoo\n", r"expected the header 'sentence\\tlabel', found 'index"),
        ("", "expected the header 'sentence\\\\tlabel', found ''"),
        ("sentence\tlabel\nfine film\t1\nno label here\n", "line 3: expected"),
        ("sentence\tlabel\nfine film\t2\n", r"line 2: expected .* found 'fine film\\t2'"),
        ("sentence\tlabel\n \t0\n", "line 2"),
    ],
)
def test_a_malformed_tsv_names_the_file_and_line(content, message):
    with pytest.raises(ValueError, match=rf"train\.tsv:? {message}"):
        parse_tsv(content, "train.tsv")


def test_an_archive_without_the_splits_is_rejected(tmp_path):
    path = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("SST-2/train.tsv", "sentence\tlabel\na\t0\n")
    with pytest.raises(ValueError, match=r"not the GLUE SST-2 archive: it lacks SST-2/dev\.tsv"):
        read_sst2(path)


def test_sst2_datamodule_downloads_splits_and_pads(sst2):
    dm = sst2(val_fraction=0.1)
    assert (dm.num_classes, dm.labels, dm.input_shape) == (2, ("negative", "positive"), (64,))
    assert (dm.num_train, len(dm.val_dataset), len(dm.test_dataset)) == (180, 20, 40)
    assert dm.class_counts == [90, 90]
    assert (Path(dm.data_dir) / "SST-2.zip").is_file()
    label_of = {text: label for text, label in sst2.train + sst2.dev}
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        texts = decoded(dm, dataset)  # byte-level BPE decodes to the very text
        assert [label_of[t] for t in texts] == dataset.tensors[1].tolist()
    assert set(decoded(dm, dm.test_dataset)) == {t for t, _ in sst2.dev}
    train_val = set(decoded(dm, dm.train_dataset)) | set(decoded(dm, dm.val_dataset))
    assert train_val == {t for t, _ in sst2.train}


def test_batches_are_right_padded_to_their_longest_text(sst2):
    dm = sst2()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for tokens, labels, indices in loader:
            assert (tokens.dtype, labels.dtype, indices.dtype) == (torch.int64,) * 3
            mask = tokens != PAD_ID
            lengths = mask.sum(1)
            assert int(lengths.max()) == tokens.shape[1]  # no column of padding only
            # right padding: the mask is 1...1 0...0 in every row
            assert torch.equal(mask, torch.arange(tokens.shape[1]) < lengths[:, None])
            stored = loader.dataset.tensors[0][indices]
            assert torch.equal(tokens, stored[:, : tokens.shape[1]])
            assert not stored[:, tokens.shape[1] :].any()


def test_the_tokenizer_sees_the_training_split_only(sst2, monkeypatch):
    seen = []
    real = text_cls.load_or_train_bpe

    def spy(texts, *args, **kwargs):
        seen.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(text_cls, "load_or_train_bpe", spy)
    dm = sst2(imbalance_ratio=3.0)
    assert len(seen) == 1
    assert sorted(seen[0]) == sorted(decoded(dm, dm.train_dataset))
    held_out = set(decoded(dm, dm.val_dataset)) | set(decoded(dm, dm.test_dataset))
    assert held_out and not held_out & set(seen[0])
    cached = sorted((Path(dm.data_dir) / "tokenizers").glob("bpe-300-*.json"))
    assert [Path(dm.tokenizer.path)] == cached


def test_max_length_keeps_the_first_tokens(sst2):
    full, cut = sst2(), sst2(max_length=3)
    assert cut.input_shape == (3,)
    for a, b in ((full.train_dataset, cut.train_dataset), (full.test_dataset, cut.test_dataset)):
        assert b.tensors[0].shape[1] == 3
        assert torch.equal(a.tensors[0][:, :3], b.tensors[0])


def test_a_corrupt_archive_gives_a_checksum_error_and_no_file(sst2, tmp_path, monkeypatch):
    wrong = RemoteFile(sst2.remote.url, sha256="0" * 64)
    monkeypatch.setitem(
        text_cls.CORPORA, "sst2", dataclasses.replace(text_cls.CORPORA["sst2"], remote=wrong)
    )
    dm = TextClassificationDataModule(corpus="sst2", data_dir=str(tmp_path / "cache"))
    with pytest.raises(
        ChecksumError, match=f"expected sha256 {'0' * 64}, got {sst2.remote.sha256}"
    ):
        dm.prepare_data()
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_archive_without_download_says_how_to_get_it(tmp_path):
    dm = TextClassificationDataModule(corpus="sst2", data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match=r"download=false: allow downloading"):
        dm.prepare_data()
    with pytest.raises(FileNotFoundError, match=r"call prepare_data\(\) before setup\(\)"):
        dm.setup()


def test_the_default_corpus_fetches_nothing(tmp_path, monkeypatch):
    def no_fetch(*args, **kwargs):
        raise AssertionError("the default corpus must not download")

    monkeypatch.setattr(text_cls, "fetch", no_fetch)
    dm = TextClassificationDataModule(data_dir=str(tmp_path), vocab_size=300)
    dm.prepare_data()
    dm.setup()
    assert dm.corpus == "emoji_lang" and dm.num_classes == 14


# ---------------------------------------------------------------------- emoji names
def test_emoji_names_are_plain_texts_labelled_by_language():
    texts, labels, groups = load_emoji_names()
    assert len(texts) == len(labels) == len(groups) > 20_000
    assert labels.dtype == groups.dtype == torch.int64
    counts = torch.bincount(labels, minlength=len(LANGUAGES))
    assert int(counts.min()) > 0.95 * int(counts.max())  # nearly balanced: one name each
    assert torch.bincount(groups).max() <= len(LANGUAGES)
    assert not any(t[0] == ":" or "_" in t or not t.strip() for t in texts)
    pairs = set(zip(texts, labels.tolist(), strict=True))
    assert len(pairs) == len(texts)  # a (text, language) pair once
    english = {t for t, y in pairs if LANGUAGES[y] == "en"}
    assert {"thumbs up", "red heart", "grinning face"} <= english
    assert "pouce vers le haut" in {t for t, y in pairs if LANGUAGES[y] == "fr"}
    assert not any("skin tone" in t for t in english)


def test_split_by_group_keeps_groups_whole():
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])
    train, test = split_by_group(groups, 0.4, torch.Generator().manual_seed(0))
    assert sorted(train.tolist() + test.tolist()) == list(range(10))
    assert len(groups[test].unique()) == 2  # round(0.4 * 5)
    assert not set(groups[train].tolist()) & set(groups[test].tolist())


def test_emoji_lang_test_set_is_fixed_and_unseen(emoji_lang):
    a, b = emoji_lang(seed=0), emoji_lang(seed=1)
    assert torch.equal(a.test_dataset.tensors[1], b.test_dataset.tensors[1])
    assert set(decoded(a, a.test_dataset)) == set(decoded(b, b.test_dataset))
    assert set(decoded(a, a.val_dataset)) != set(decoded(b, b.val_dataset))  # seeded hold-out
    # every translation of a test emoji is in test: train and test texts barely meet (only
    # texts that two emoji share, such as a name written the same in two languages)
    train, test = set(decoded(a, a.train_dataset)), set(decoded(a, a.test_dataset))
    assert len(train & test) < 0.02 * len(test)
    assert a.num_classes == 14 and len(set(a.class_counts)) == 1


def test_long_tailed_text_subsamples_training_only(emoji_lang):
    balanced, tailed = emoji_lang(seed=0), emoji_lang(seed=0, imbalance_ratio=10.0)
    n_max = min(balanced.class_counts)
    assert tailed.class_counts == long_tail_counts(n_max, 14, 10.0)
    assert tailed.class_counts[0] == n_max and tailed.class_counts[-1] == n_max // 10
    assert torch.equal(tailed.val_dataset.tensors[1], balanced.val_dataset.tensors[1])
    assert torch.equal(tailed.test_dataset.tensors[1], balanced.test_dataset.tensors[1])


def test_same_seed_same_tensors(emoji_lang):
    a, b = emoji_lang(seed=0), emoji_lang(seed=0, fresh=True)
    assert a is not b
    for x, y in zip(
        (a.train_dataset, a.val_dataset, a.test_dataset),
        (b.train_dataset, b.val_dataset, b.test_dataset),
        strict=True,
    ):
        for u, v in zip(x.tensors, y.tensors, strict=True):
            assert torch.equal(u, v)


def test_a_text_holding_the_padding_token_is_rejected(tmp_path, monkeypatch):
    """It would encode to the padding id and be masked away as padding."""
    train = [*sst2_rows(20, seed=0), ("a <|pad|> review", 1)]
    remote = make_sst2_archive(tmp_path / "server" / "SST-2.zip", train, sst2_rows(4, seed=1))
    corpus = dataclasses.replace(text_cls.CORPORA["sst2"], remote=remote)
    monkeypatch.setitem(text_cls.CORPORA, "sst2", corpus)
    dm = TextClassificationDataModule(
        corpus="sst2", data_dir=str(tmp_path / "cache"), vocab_size=300, val_fraction=0.01
    )
    dm.prepare_data()
    message = "sst2 train: the text 'a <|pad|> review' contains the padding token '<|pad|>'"
    with pytest.raises(ValueError, match=re.escape(message)):
        dm.setup()


# ------------------------------------------------------------------------- collation
def test_pad_batch_trims_columns_of_padding_only():
    samples = [
        (torch.tensor([5, 6, 0, 0, 0]), torch.tensor(1), torch.tensor(0)),
        (torch.tensor([7, 0, 0, 0, 0]), torch.tensor(0), torch.tensor(1)),
    ]
    tokens, labels, indices = PadBatch(0)(samples)
    assert tokens.tolist() == [[5, 6], [7, 0]]
    assert labels.tolist() == [1, 0] and indices.tolist() == [0, 1]


# ----------------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corpus": "imdb"}, "corpus must be one of 'emoji_lang', 'sst2'; got 'imdb'"),
        ({"vocab_size": 100}, "vocab_size must be an int >= 258, got 100"),
        ({"vocab_size": 40000}, "vocab_size must be an int <= 32000, got 40000"),
        ({"max_length": 0}, "max_length must be an int >= 1, got 0"),
        ({"min_frequency": 0}, "min_frequency must be an int >= 1, got 0"),
        ({"download": "no"}, "download must be true or false, got 'no'"),
        ({"data_dir": ""}, "data_dir must be a non-empty path, got ''"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextClassificationDataModule(**kwargs)
