"""Translation through ``adaptls.train`` with the default callbacks: the fused head in
training, token NLL / ppl / ECE under teacher forcing (and after temperature scaling),
BLEU and chrF of the decoded test split with sacrebleu's signatures in metrics.json, the
closing table, and the hypotheses and samples in the run directory."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from adaptls.train import train

# A tiny model and two training batches: seconds, decoding of the whole test split included.
TINY_MT = [
    "data=text_mt",
    "model=transformer_mt",
    "data.vocab_size=300",
    "model.layers=1",
    "model.width=32",
    "model.heads=2",
    "callbacks.translation.beam_size=2",
    "logger=csv",  # every default callback runs (the LR monitor needs a logger)
]


@pytest.fixture(scope="module")
def run(compose_train, tiny, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("mt")
    cfg = compose_train(*TINY_MT, *tiny, "smoothing.convention=fairseq", output_dir=output_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        train(cfg)
    return output_dir, json.loads((output_dir / "metrics.json").read_text()), stdout.getvalue()


def test_the_run_reports_translation_and_token_metrics(run):
    _, metrics, _ = run
    test = metrics["test"]
    for key in ("test/bleu", "test/chrf", "test/ppl", "test/nll", "test/ece", "test/acc"):
        assert math.isfinite(test[key]), (key, test[key])
    assert 0 <= test["test/bleu"] <= 100 and 0 <= test["test/chrf"] <= 100
    assert test["test/ppl"] == pytest.approx(math.exp(test["test/nll"]), rel=1e-5)
    assert math.isfinite(test["test/ts/ece"])  # token ECE after temperature scaling
    assert "val/bleu" not in metrics["val"]  # decoding is for the tested weights only
    record = metrics["TranslationMetrics"]
    assert record["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert record["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6")
    assert record["beam_size"] == 2 and len(record["samples"]) == 8
    # the convention of the run's smoothing is on record, and the learning rate used
    # (optimizer.lr null: the Transformer's own default, not the MNIST-1D CNN's 0.02)
    assert metrics["strategy"]["hparams"]["convention"] == "fairseq"
    assert metrics["config"]["optimizer"]["lr"] == 0.002


def test_the_whole_test_split_is_decoded_into_the_run_directory(run):
    output_dir, metrics, _ = run
    hypotheses = (output_dir / "translations" / "test.hyp").read_text().splitlines()
    assert len(hypotheses) == metrics["TranslationMetrics"]["sentences"] > 200
    samples = json.loads((output_dir / "translations" / "samples.json").read_text())
    assert set(samples[0]) == {"source", "reference", "hypothesis"}
    assert [s["hypothesis"] for s in samples] == hypotheses[: len(samples)]


def test_the_closing_table_shows_bleu_and_chrf(run):
    output_dir, _, stdout = run
    header = next(line for line in stdout.splitlines() if line.startswith("| split |"))
    assert "| ppl |" in header and "| bleu | chrf |" in header
    # last, where the user looks: where the files went
    assert stdout.rstrip().splitlines()[-1] == (
        f"Run directory (metrics.json, checkpoints, plots): {output_dir}"
    )


def test_training_goes_through_the_fused_linear_loss(compose_train, tiny, tmp_path):
    from adaptls.train import build

    cfg = compose_train(*TINY_MT, *tiny, "smoothing=masked", output_dir=tmp_path)
    _, module, _ = build(cfg)
    assert module.linear_head and module.token_level
