"""data=text_mt's downloaded corpora on archives the tests build in the real layouts:
IWSLT14 prepared as fairseq's prepare-iwslt14.sh does (metadata dropped, Moses-tokenised,
lower-cased, clean-corpus-n at 1..175 and ratio 1.5, every 23rd line to validation, the
five test sets concatenated in order), WMT14's News Commentary v9 / newstest2013 /
newstest2014 (.sgm), each download verified (IWSLT14 against the user's SHA-256, WMT14
pinned), nothing written on a mismatch, and the official splits kept."""

from __future__ import annotations

import sys

import mt_archives
import pytest

from adaptls.data import TextMTDataModule
from adaptls.data import iwslt14 as iwslt14_module
from adaptls.data import wmt14 as wmt14_module
from adaptls.data.download import ChecksumError
from adaptls.data.iwslt14 import clean_corpus, read_iwslt14, seg_lines, train_lines
from adaptls.data.wmt14 import read_wmt14, sgm_segments


@pytest.fixture
def iwslt14_server(tmp_path, monkeypatch):
    """fairseq's URL pointed at a built ``de-en.tgz``; its SHA-256."""
    archive = tmp_path / "server" / "de-en.tgz"
    sha256 = mt_archives.make_iwslt14_tgz(archive)
    monkeypatch.setattr(iwslt14_module, "IWSLT14_URL", archive.as_uri())
    return sha256


@pytest.fixture
def wmt14_server(tmp_path, monkeypatch):
    """The pinned WMT14 RemoteFiles pointed at built archives (pinned by their SHA-256)."""
    nc, dev = mt_archives.make_wmt14_tgzs(tmp_path / "server")
    monkeypatch.setattr(wmt14_module, "NEWS_COMMENTARY_V9", nc)
    monkeypatch.setattr(wmt14_module, "WMT_DEV", dev)
    return nc, dev


# ---------------------------------------------------------------------- IWSLT14 steps
def test_train_lines_drop_the_metadata_and_keep_title_and_description_text():
    lines = [de for de, _ in mt_archives.TRAIN_TAGS[:6]]
    assert train_lines(lines) == ["Mein Vortrag", 'TED Talk: "Ideen"', ""]


def test_seg_lines_keep_the_segments_only_without_markup():
    xml = mt_archives.iwslt_xml("IWSLT14.TED.tst2011", "en").split("\n")
    assert seg_lines(xml) == [
        "It's Sentence from tst2011 number 0.",
        "Sentence from tst2011 number 1.",
    ]


def test_clean_corpus_follows_clean_corpus_n():
    source = ["a  b\tc ", "", "a", "a b c d", " ".join("x" * 176), "a|b c", "w" * 1001]
    target = ["x y z", "x", "x y z w", "x y z", " ".join("y" * 176), "x y", "z"]
    # kept: whitespace collapsed; 4/3 < 1.5; '|' deleted. Dropped: an empty side, 4 > 1.5
    # times 1 token, 176 > 175 tokens, a 1001-character token.
    assert clean_corpus(source, target) == [
        ("a b c", "x y z"),
        ("a b c d", "x y z"),
        ("ab c", "x y"),
    ]
    with pytest.raises(ValueError, match="differ in length: 2 and 1 lines"):
        clean_corpus(["a", "b"], ["x"])


def test_iwslt14_is_prepared_as_fairseq_prepares_it(tmp_path):
    mt_archives.make_iwslt14_tgz(tmp_path / "de-en.tgz")
    splits = read_iwslt14(tmp_path / "de-en.tgz")
    expected = mt_archives.PREPARED_TRAIN
    assert splits["val"] == [expected[22], expected[45]]  # cleaned lines 23 and 46
    assert splits["train"] == [p for i, p in enumerate(expected, start=1) if i % 23]
    assert splits["test"] == mt_archives.prepared_test()


def test_a_wrong_archive_is_refused_naming_the_missing_file(tmp_path):
    mt_archives.write_tgz(tmp_path / "de-en.tgz", {"de-en/README": "x\n"})
    with pytest.raises(ValueError, match=r"not fairseq's IWSLT14 de-en archive: no train\.tags"):
        read_iwslt14(tmp_path / "de-en.tgz")


# ---------------------------------------------------------------------- IWSLT14 module
def test_iwslt14_is_fetched_verified_cached_and_keeps_its_split(tmp_path, iwslt14_server):
    data_dir = tmp_path / "data"
    dm = TextMTDataModule(corpus="iwslt14", pair="en-de", sha256=iwslt14_server, data_dir=data_dir, vocab_size=300, max_length=200)  # fmt: skip
    dm.prepare_data()
    assert (data_dir / "de-en.tgz").is_file()
    (tmp_path / "server" / "de-en.tgz").unlink()  # the cached copy serves from now on
    dm.setup()
    flipped = {split: [(en, de) for de, en in pairs] for split, pairs in
               read_iwslt14(data_dir / "de-en.tgz").items()}  # fmt: skip
    assert dm.pairs == flipped  # en -> de, the official split, no pair too long
    assert dm.pairs["test"][0] == ("it &apos;s sentence from dev2010 number 0 .", "satz aus dev2010 nummer 0 .")  # fmt: skip
    assert len(dm.test_dataset) == 10 and len(dm.val_dataset) == 2


def test_iwslt14_with_another_checksum_writes_nothing(tmp_path, iwslt14_server):
    dm = TextMTDataModule(corpus="iwslt14", sha256="0" * 64, data_dir=tmp_path / "data")
    with pytest.raises(ChecksumError, match=r"expected sha256 0{64}"):
        dm.prepare_data()
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


@pytest.mark.parametrize(
    ("sha256", "message"),
    [
        (None, r"^sha256 is null, and no checksum of http://dl\.fbaipublicfiles\.com/fairseq/data/"
               r"iwslt14/de-en\.tgz is published: pass data\.sha256=<SHA-256 hex of a copy you "
               r"trust> \(e\.g\. from `sha256sum de-en\.tgz`\)$"),
        ("abc", "^sha256 must be 64 hexadecimal digits, got 'abc'$"),
    ],
)  # fmt: skip
def test_iwslt14_needs_a_sha256_refused_in_one_line(sha256, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TextMTDataModule(corpus="iwslt14", pair="de-en", sha256=sha256, data_dir=tmp_path)


def test_iwslt14_without_sacremoses_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses fails
    with pytest.raises(ImportError, match=r"sacremoses .*: pip install adaptls\[mt\]$"):
        TextMTDataModule(corpus="iwslt14", sha256="a" * 64, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"corpus": "wmt14", "pair": "en-ja"},
            "pair must be <source>-<target> of corpus wmt14: de-en or en-de, got 'en-ja'",
        ),
        (
            {"corpus": "iwslt14", "pair": "de-de", "sha256": "a" * 64},
            "of corpus iwslt14: de-en or en-de, got 'de-de'",
        ),
        ({"corpus": "wmt14", "sha256": "a" * 64}, "sha256 is for corpus=iwslt14 only"),
        ({"corpus": "wmt19"}, "corpus must be one of 'cldr', 'iwslt14', 'wmt14'; got 'wmt19'"),
    ],
)
def test_a_setting_the_corpus_lacks_is_refused_in_one_line(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message) as error:
        TextMTDataModule(data_dir=tmp_path, **kwargs)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------- WMT14
def test_sgm_segments_are_the_seg_lines_in_order():
    text = mt_archives.sgm("newstest2014", "de", ["Eins.", "Zwei <b> & drei"])
    assert sgm_segments(text) == ["Eins.", "Zwei <b> & drei"]


def test_wmt14_reads_news_commentary_newstest2013_and_newstest2014(tmp_path):
    mt_archives.make_wmt14_tgzs(tmp_path)
    splits = read_wmt14(tmp_path / "training-parallel-nc-v9.tgz", tmp_path / "dev.tgz")
    train = [p for i, p in enumerate(mt_archives.NC_PAIRS) if i != mt_archives.NC_EMPTY_AT]
    assert splits == {
        "train": train,  # the pair with an empty side dropped, the cs-en files ignored
        "val": mt_archives.DEV_PAIRS,
        "test": mt_archives.TEST_PAIRS,  # raw text: no tokenisation, no lower-casing
    }


def test_wmt14_is_fetched_verified_and_keeps_its_split(tmp_path, wmt14_server):
    data_dir = tmp_path / "data"
    dm = TextMTDataModule(corpus="wmt14", pair="de-en", data_dir=data_dir, vocab_size=300)
    dm.prepare_data()
    assert {p.name for p in data_dir.iterdir()} == {"training-parallel-nc-v9.tgz", "dev.tgz"}
    dm.setup()
    assert dm.pairs["test"] == mt_archives.TEST_PAIRS and len(dm.pairs["train"]) == 29
    task = dm.translation_task("test")
    assert task.references[0] == "Test 0 & more."  # detokenised BLEU against raw text


def test_wmt14_with_a_wrong_checksum_writes_nothing(tmp_path, wmt14_server, monkeypatch):
    _, dev = wmt14_server
    monkeypatch.setattr(wmt14_module, "WMT_DEV", type(dev)(dev.url, sha256="f" * 64))
    data_dir = tmp_path / "data"
    with pytest.raises(ChecksumError, match=r"expected sha256 f{64}"):
        TextMTDataModule(corpus="wmt14", data_dir=data_dir).prepare_data()
    assert {p.name for p in data_dir.iterdir()} == {"training-parallel-nc-v9.tgz"}


def test_the_wmt14_archives_are_pinned_by_sha256():
    for remote, name in [(wmt14_module.NEWS_COMMENTARY_V9, "training-parallel-nc-v9.tgz"),
                         (wmt14_module.WMT_DEV, "dev.tgz")]:  # fmt: skip
        assert remote.checksum[0] == "sha256" and len(remote.sha256) == 64
        assert remote.filename == name and remote.url.startswith("http://")
