"""The downloaded translation corpora through ``adaptls.train``: IWSLT14 without a SHA-256
and a pair a corpus lacks are refused at build in one line, before anything is fetched;
with the SHA-256 of a copy in ``data_dir`` (fairseq's real URL never contacted: the
verified copy is used), a run trains, decodes the whole test split and reports BLEU."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import pytest

from adaptls.run.config import ConfigError
from adaptls.train import build, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import mt_archives  # the archive builders of tests/data
from test_translation import TINY_MT


@pytest.mark.slow
def test_the_cli_refuses_iwslt14_without_a_sha256_in_one_line(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "data=text_mt",
        "data.corpus=iwslt14",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    (line,) = [x for x in output.splitlines() if "invalid configuration: " in x]
    assert line.split("invalid configuration: ", 1)[1] == (
        "data.sha256 is null, and no checksum of "
        "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz is published: pass "
        "data.sha256=<SHA-256 hex of a copy you trust> (e.g. from `sha256sum de-en.tgz`)"
    )
    assert {p.name for p in run_dir.iterdir()} == {"train.log", ".hydra"}


def test_a_pair_the_corpus_lacks_is_refused_at_build(compose_train, tmp_path):
    cfg = compose_train(
        *TINY_MT, "data.corpus=wmt14", "data.pair=en-ja", f"data.data_dir={tmp_path / 'data'}",
        output_dir=tmp_path / "run",
    )  # fmt: skip
    with pytest.raises(ConfigError) as error:
        build(cfg)
    assert str(error.value) == (
        "data.pair must be <source>-<target> of corpus wmt14: de-en or en-de, got 'en-ja'"
    )
    assert not (tmp_path / "data").exists()  # nothing fetched


@pytest.mark.slow
def test_a_run_on_iwslt14_trains_and_reports_bleu(compose_train, tiny, tmp_path):
    data_dir = tmp_path / "data"
    sha256 = mt_archives.make_iwslt14_tgz(data_dir / "de-en.tgz")
    output_dir = tmp_path / "run"
    cfg = compose_train(
        *TINY_MT, *tiny, "data.corpus=iwslt14", "data.pair=de-en", f"data.sha256={sha256}",
        f"data.data_dir={data_dir}", "data.max_length=48", output_dir=output_dir,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test"]["test/bleu"]) and math.isfinite(
        metrics["test"]["test/ppl"]
    )
    assert metrics["TranslationMetrics"]["sentences"] == len(mt_archives.prepared_test())
    first = json.loads((output_dir / "translations" / "samples.json").read_text())[0]
    assert (first["source"], first["reference"]) == mt_archives.prepared_test()[0]
