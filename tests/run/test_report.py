"""The run's record and closing words: metrics.json as the run writes it, the columns its
summaries show for each kind of run, and the direction and size of its miscalibration."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from adaptls.compare import default_metrics, load_runs
from adaptls.data import SyntheticDataModule
from adaptls.metrics.group_accuracy import shot_groups
from adaptls.models import MLP, TransformerLM
from adaptls.module import SmoothingClassifier
from adaptls.run.report import calibration_verdict, print_table, summary_metrics, write_metrics
from adaptls.smoothing import UniformSmoothing

HEADLINE = ["acc", "ece", "adaece", "nll", "brier"]


# ---------------------------------------------------------------------- which columns
@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        (HEADLINE, HEADLINE),
        ([*HEADLINE, "ppl", "balanced_acc"], ["acc", "ece", "adaece", "nll", "ppl", "brier"]),
        # one group holds every class: its accuracy is acc again
        ([*HEADLINE, "acc_many"], HEADLINE),
        ([*HEADLINE, "acc_medium"], HEADLINE),
        ([*HEADLINE, "acc_few", "acc_many"], [*HEADLINE, "acc_many", "acc_few"]),
        (["acc_few", "acc_medium", "acc_many"], ["acc_many", "acc_medium", "acc_few"]),
    ],
)
def test_summary_metrics_follow_what_the_run_reports(reported, shown):
    names = {f"test/{m}": 0.5 for m in reported} | {f"val/{m}": 0.5 for m in ("ppl", "acc_few")}
    assert summary_metrics(names, "test") == [f"test/{m}" for m in shown]


# ---------------------------------------------------------------------- from real runs
def evaluate(datamodule: pl.LightningDataModule, net: torch.nn.Module, token_level: bool):
    """Validate and test an (untrained) model as ``adaptls.train`` does: the suite's figures
    as Lightning returns them, from the datamodule's real class counts."""
    module = SmoothingClassifier(
        net,
        UniformSmoothing(epsilon=0.1),
        partial(torch.optim.AdamW, lr=1e-3),
        num_classes=datamodule.num_classes,
        class_counts=datamodule.class_counts,
        token_level=token_level,
    )
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_model_summary=False, limit_val_batches=2,
        limit_test_batches=2,
    )  # fmt: skip
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return val, test


def classifier_kind(tmp_path: Path, tiny_text, imbalance_ratio: float = 1.0):
    dm = SyntheticDataModule(num_train=600, num_test=200, imbalance_ratio=imbalance_ratio)
    dm.setup()
    return dm, MLP(dm.input_shape, dm.num_classes, hidden=(16,)), False


def long_tail_kind(tmp_path: Path, tiny_text):
    return classifier_kind(tmp_path, tiny_text, imbalance_ratio=30.0)


def language_model_kind(tmp_path: Path, tiny_text):
    dm = tiny_text(vocab_size=300, context_length=16, batch_size=8, data_dir=tmp_path)
    dm.setup()
    net = TransformerLM(dm.input_shape, dm.num_classes, layers=1, width=16, heads=2)
    return dm, net, True


KINDS = {
    # kind: (maker, groups the class counts fill, perplexity reported)
    "classifier": (classifier_kind, ["medium"], False),  # 54 training samples per class
    "long_tail": (long_tail_kind, ["medium", "few"], False),  # 54 down to 1: no many-shot
    "language_model": (language_model_kind, ["many", "medium", "few"], True),
}


@pytest.fixture(scope="module")
def written_runs(tmp_path_factory, tiny_text) -> dict[str, Path]:
    """One metrics.json per kind of run, written by ``write_metrics`` from what Lightning
    returns for the real module on the kind's real datamodule."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for kind, (make, _, _) in KINDS.items():
        torch.manual_seed(0)
        dm, net, token_level = make(root / f"{kind}_data", tiny_text)
        val, test = evaluate(dm, net, token_level)
        config = {"seed": 0, "smoothing": {"_target_": "adaptls.smoothing.UniformSmoothing"}}
        config["data"] = {"kind": kind, "class_counts": dm.class_counts}
        run_dir = root / kind
        run_dir.mkdir()
        evaluated = {"rule": "last", "path": None, "epoch": 0, "step": 0}
        write_metrics(run_dir / "metrics.json", val, test, config, {"name": "uniform"}, evaluated)
        runs[kind] = run_dir
    return runs


@pytest.mark.parametrize("kind", list(KINDS))
def test_metrics_json_holds_a_group_only_where_the_class_counts_put_classes(written_runs, kind):
    record = json.loads((written_runs[kind] / "metrics.json").read_text())
    _, groups, perplexity = KINDS[kind]
    counts = record["config"]["data"]["class_counts"]
    assert list(shot_groups(counts)) == groups  # the groups the data's class counts fill
    for split in ("val", "test"):
        reported = [m for m in ("many", "medium", "few") if f"{split}/acc_{m}" in record[split]]
        assert reported == groups  # an empty group is absent, never 0
        assert (f"{split}/ppl" in record[split]) == perplexity


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_closing_table_and_compare_show_what_the_run_kind_needs(written_runs, kind, capsys):
    record = json.loads((written_runs[kind] / "metrics.json").read_text())
    _, groups, perplexity = KINDS[kind]
    expected = ["acc", "ece", "adaece", "nll", *(["ppl"] if perplexity else []), "brier"]
    expected += [f"acc_{g}" for g in groups] if len(groups) > 1 else []

    print_table(record["val"], record["test"], title=kind)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| split |"))
    assert header == "| split | " + " | ".join(expected) + " |"
    test_row = next(line for line in lines if line.startswith("| test |"))
    assert f"{record['test']['test/acc']:.4f}" in test_row
    if perplexity:
        assert f"{record['test']['test/ppl']:.4f}" in test_row

    assert default_metrics(load_runs([written_runs[kind]])) == [f"test/{m}" for m in expected]


def test_compare_defaults_over_runs_of_several_kinds(written_runs):
    runs = load_runs(list(written_runs.values()))
    assert default_metrics(runs) == [
        *("test/acc", "test/ece", "test/adaece", "test/nll", "test/ppl", "test/brier"),
        *("test/acc_many", "test/acc_medium", "test/acc_few"),
    ]
    # Without the language model, no run has a many-shot group; the classifier's single
    # group (medium) is its acc, yet the long-tail run's medium-shot column stays.
    runs = load_runs([written_runs["classifier"], written_runs["long_tail"]])
    assert default_metrics(runs)[-2:] == ["test/acc_medium", "test/acc_few"]


def test_a_group_without_rows_shows_as_a_dash(capsys):
    test = {"test/acc": 0.5, "test/acc_many": 0.6, "test/acc_few": float("nan")}
    print_table({}, test, title="t")
    assert "| test | 0.5000 | 0.6000 | - |" in capsys.readouterr().out


# ---------------------------------------------------------------------- verdict
@pytest.mark.parametrize(
    ("confidence", "accuracy", "expected"),
    [
        (0.83, 0.947, "under-confident by 11.7 points"),
        (0.984, 0.931, "over-confident by 5.3 points"),
        (0.902, 0.9, "about as confident as it is accurate"),
    ],
)
def test_the_verdict_names_direction_and_size(confidence, accuracy, expected):
    test = {"test/confidence": confidence, "test/acc": accuracy, "test/ece": 0.116}
    verdict = calibration_verdict(test)
    assert expected in verdict
    assert f"mean confidence {confidence:.3f}, accuracy {accuracy:.3f}, ECE 11.6%" in verdict


def test_no_verdict_without_the_figures():
    assert calibration_verdict({"test/acc": 0.9}) is None
    assert calibration_verdict({"test/acc": 0.9, "test/confidence": float("nan")}) is None


@pytest.mark.parametrize(("ece", "explained"), [(0.084, True), (0.02, False)])
def test_an_ece_well_above_the_mean_gap_is_explained(ece, explained):
    """Under-confident by 1.2 points with ECE 8.4%: bins over- and under-confident by more
    cancel in the mean gap; the verdict says so rather than read as a slip."""
    test = {"test/confidence": 0.788, "test/acc": 0.8, "test/ece": ece}
    verdict = calibration_verdict(test)
    assert "under-confident by 1.2 points" in verdict
    assert ("the gaps of the confidence bins, which do not cancel" in verdict) is explained
