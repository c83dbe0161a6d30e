"""Small archives in the layout of the real translation downloads, for the tests: fairseq's
IWSLT14 ``de-en.tgz`` and WMT14's ``training-parallel-nc-v9.tgz`` / WMT19's ``dev.tgz``,
with the real member names, metadata lines, SGML/XML markup and lines each cleaning rule
drops. Their expected preparation is spelled out next to them."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from adaptls.data.download import RemoteFile

# ------------------------------------------------------------------ IWSLT14
# Numbered training sentences: 6 Moses tokens on each side ("Satz Nummer 7 ist hier .").
NUMBERED = 60
LONG_KEPT, LONG_DROPPED = 170, 180  # tokens a side: under and over clean-corpus' 175
# (German, English) lines of train.tags.de-en.*, in order, before any filter. The
# metadata lines go (fairseq's grep -v), title and description keep their text.
TRAIN_TAGS: list[tuple[str, str]] = [
    ('<url>http://www.ted.com/talks/a.html</url>', '<url>http://www.ted.com/talks/a.html</url>'),
    ("<keywords>talks, ocean</keywords>", "<keywords>talks, ocean</keywords>"),
    ("<talkid>1</talkid>", "<talkid>1</talkid>"),
    ("<title>Mein Vortrag</title>", "<title>My Talk</title>"),
    ('<description>TED Talk: "Ideen"</description>', '<description>TED Talk: "Ideas"</description>'),
    ("", ""),  # empty: dropped by clean-corpus
    ("Ja.", "Yes, of course it is."),  # 2 vs 6 tokens: ratio 3 > 1.5, dropped
    ("Er kommt   morgen.", "He comes tomorrow."),  # 4 vs 4 tokens, spaces collapsed
    ("Ich bin's.", "It's me."),  # Moses' apostrophe rules, escaped
    (" ".join(["Wort"] * LONG_KEPT), " ".join(["word"] * LONG_KEPT)),
    (" ".join(["Wort"] * LONG_DROPPED), " ".join(["word"] * LONG_DROPPED)),
    *[(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(NUMBERED)],
]  # fmt: skip
# The cleaned, tokenised, lower-cased training lines fairseq's script gives, in order.
PREPARED_TRAIN: list[tuple[str, str]] = [
    ("mein vortrag", "my talk"),
    ("ted talk : &quot; ideen &quot;", "ted talk : &quot; ideas &quot;"),
    ("er kommt morgen .", "he comes tomorrow ."),
    ("ich bin &apos; s .", "it &apos;s me ."),  # German splits every apostrophe
    (" ".join(["wort"] * LONG_KEPT), " ".join(["word"] * LONG_KEPT)),
    *[(f"satz nummer {i} ist hier .", f"sentence number {i} is here .") for i in range(NUMBERED)],
]
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
SEGMENTS = 2  # per test set


def iwslt_xml(name: str, language: str) -> str:
    """An IWSLT evaluation file: header lines, then ``<seg id>`` lines (padded by spaces,
    as in the originals) whose text names the set; its first English segment has a curly
    apostrophe."""
    label = name.rsplit(".", 1)[1]
    words = {"de": "Satz aus {label} Nummer {k}.", "en": "Sentence from {label} number {k}."}
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<mteval>",
        f'<srcset setid="iwslt2014-{label}" srclang="english">',
        '<doc docid="1" genre="lectures">',
        "<url>http://www.ted.com/talks/b.html</url>",
        "<talkid>2</talkid>",
        f"<title>{'Titel' if language == 'de' else 'Title'}</title>",
    ]
    for k in range(SEGMENTS):
        text = words[language].format(label=label, k=k)
        if language == "en" and k == 0:
            text = "It\u2019s " + text
        lines.append(f'<seg id="{k + 1}"> {text} </seg>')
    lines += ["</doc>", "</srcset>", "</mteval>"]
    return "\n".join(lines) + "\n"


def prepared_test() -> list[tuple[str, str]]:
    """The test pairs fairseq's script gives for :func:`iwslt_xml`'s files, in its order."""
    pairs = []
    for name in TEST_SETS:
        label = name.rsplit(".", 1)[1]
        for k in range(SEGMENTS):
            en = f"sentence from {label} number {k} ."
            pairs.append((f"satz aus {label} nummer {k} .", ("it &apos;s " if k == 0 else "") + en))
    return pairs


def make_iwslt14_tgz(path: Path) -> str:
    """Write a ``de-en.tgz`` in fairseq's layout at ``path``; return its SHA-256."""
    files = {}
    for index, language in enumerate(("de", "en")):
        tags = "\n".join(pair[index] for pair in TRAIN_TAGS) + "\n"
        files[f"de-en/train.tags.de-en.{language}"] = tags
        for name in TEST_SETS:
            files[f"de-en/IWSLT14.{name}.de-en.{language}.xml"] = iwslt_xml(name, language)
    files["de-en/README"] = "IWSLT 2014 German-English\n"
    return write_tgz(path, files)


# ------------------------------------------------------------------ WMT14
NC_PAIRS = [(f"Nachricht {i}.", f"News {i}.") for i in range(30)]
NC_EMPTY_AT = 5  # an empty English line there: the pair is dropped (as TFDS drops it)
DEV_PAIRS = [(f"Entwicklung {i}.", f"Development {i}.") for i in range(6)]
TEST_PAIRS = [(f"Prüfung {i} & mehr.", f"Test {i} & more.") for i in range(8)]


def sgm(setid: str, language: str, texts: list[str]) -> str:
    """A WMT ``.sgm`` file: srcset / doc / p lines around one ``<seg id>`` line a text."""
    lines = [f'<srcset setid="{setid}" srclang="any">']
    lines.append(f'<doc sysid="ref" docid="1-bbc" genre="news" origlang="{language}">')
    lines.append("<p>")
    lines += [f'<seg id="{i + 1}">{text}</seg>' for i, text in enumerate(texts)]
    lines += ["</p>", "</doc>", "</srcset>"]
    return "\n".join(lines) + "\n"


def make_wmt14_tgzs(directory: Path) -> tuple[RemoteFile, RemoteFile]:
    """Write ``training-parallel-nc-v9.tgz`` and ``dev.tgz`` into ``directory``; return
    their RemoteFiles (file:// URLs, SHA-256 pinned)."""
    german = [de for de, _ in NC_PAIRS]
    english = ["" if i == NC_EMPTY_AT else en for i, (_, en) in enumerate(NC_PAIRS)]
    nc = directory / "training-parallel-nc-v9.tgz"
    nc_sha = write_tgz(
        nc,
        {
            "training/news-commentary-v9.de-en.de": "\n".join(german) + "\n",
            "training/news-commentary-v9.de-en.en": "\n".join(english) + "\n",
            "training/news-commentary-v9.cs-en.cs": "Zpráva.\n",
            "training/news-commentary-v9.cs-en.en": "News.\n",
        },
    )
    dev = directory / "dev.tgz"
    dev_sha = write_tgz(
        dev,
        {
            "dev/newstest2013.de": "\n".join(de for de, _ in DEV_PAIRS) + "\n",
            "dev/newstest2013.en": "\n".join(en for _, en in DEV_PAIRS) + "\n",
            "dev/newstest2014-deen-src.de.sgm": sgm(
                "newstest2014", "de", [d for d, _ in TEST_PAIRS]
            ),
            "dev/newstest2014-deen-ref.en.sgm": sgm(
                "newstest2014", "en", [e for _, e in TEST_PAIRS]
            ),
            "dev/newstest2012.de": "Alt.\n",
        },
    )
    return RemoteFile(nc.as_uri(), sha256=nc_sha), RemoteFile(dev.as_uri(), sha256=dev_sha)


def write_tgz(path: Path, files: dict[str, str]) -> str:
    """A gzipped tar of ``files`` (member name -> UTF-8 text) at ``path``; its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()
