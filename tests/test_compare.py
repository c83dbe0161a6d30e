"""adaptls.compare on run directories written by the test (metrics.json, .hydra/*.yaml)."""

from __future__ import annotations

import csv
import json
import math
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure
from matplotlib.image import imread

from adaptls.compare import (
    CompareError,
    SkippedRunWarning,
    compare,
    evaluation_note,
    load_runs,
    main,
    smoothing_amount,
    to_markdown,
    tradeoff_figure,
    write_csv,
    write_plots,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "none": ("NoSmoothing", {}),
    "uniform": ("UniformSmoothing", {"epsilon": 0.1}),
    "class_frequency": ("ClassFrequencySmoothing", {"epsilon_head": 0.3, "epsilon_tail": 0.0}),
    "online": ("OnlineSmoothing", {"alpha": 0.5}),
}


def fake_metric(strategy: str, seed: int, smoothing: dict, name: str) -> float:
    """A made-up but deterministic metric value, distinct per run."""
    amount = sum(v for v in smoothing.values() if isinstance(v, float))
    base = {"acc": 0.70, "ece": 0.10, "adaece": 0.09, "nll": 0.9, "brier": 0.4}[name]
    return base + 0.01 * seed + 0.1 * amount + 0.001 * len(strategy)


def write_run(
    run_dir: Path,
    strategy: str,
    seed: int,
    smoothing: dict | None = None,
    *,
    overrides: list[str] | None = None,
    extra_config: dict | None = None,
    drop: tuple[str, ...] = (),
    reliability_png: bool = False,
    data_option: str = "mnist1d_lt",
) -> Path:
    """One run directory as ``adaptls.train`` leaves it (metrics.json, .hydra/, plots/)."""
    target, defaults = TARGETS[strategy]
    smoothing = {**defaults, **(smoothing or {})}
    test = {
        f"test/{m}": fake_metric(strategy, seed, smoothing, m)
        for m in ("acc", "ece", "adaece", "nll", "brier")
    }
    test |= {
        "test/ts/ece": test["test/ece"] / 2,
        "test/ts/temperature": 1.2,
        "test/acc_many": test["test/acc"] + 0.1,
        "test/acc_few": test["test/acc"] - 0.2,
    }
    test = {k: v for k, v in test.items() if k not in drop}
    config = {
        "task_name": "train",
        "seed": seed,
        "optimized_metric": "val/nll",
        "data": {
            "_target_": "adaptls.data.MNIST1DDataModule",
            "seed": seed,
            "imbalance_ratio": 10.0,
        },
        "model": {"_target_": "adaptls.models.CNN1D", "channels": 25},
        "smoothing": {"_target_": f"adaptls.smoothing.{target}", **smoothing},
        "trainer": {"max_epochs": 2, "default_root_dir": str(run_dir)},
        "logger": {"csv": {"save_dir": str(run_dir)}},
        "callbacks": {"figures": {"dirpath": str(run_dir / "plots")}},
        "paths": {"output_dir": str(run_dir)},
        **(extra_config or {}),
    }
    record = {
        "val": {"val/acc": test["test/acc"] - 0.01, "val/nll": 1.0},
        "test": test,
        "strategy": {"name": strategy, "hparams": smoothing},
        "checkpoint": str(run_dir / "checkpoints" / "best.ckpt"),
        "config": config,
    }
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        choices = {"smoothing": strategy, "data": data_option, "hydra/env": "default"}
        hydra = {"hydra": {"runtime": {"choices": choices}}}
        (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    if reliability_png:
        (run_dir / "plots").mkdir()
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1], [0, 1])
        fig.savefig(run_dir / "plots" / "test_reliability.png")
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun: none x 3 seeds, uniform x eps {0.05, 0.2} x 3 seeds, class_frequency x 2
    seeds without the optional metrics, and one truncated metrics.json."""
    root = tmp_path / "multirun" / "2024-01-01_00-00-00"
    job = 0

    def add(strategy: str, seed: int, sweep_args: list[str], smoothing=None, **kw) -> None:
        nonlocal job
        overrides = [f"smoothing={strategy}", *sweep_args, f"seed={seed}", "data=mnist1d_lt"]
        overrides += ["trainer.max_epochs=2", "logger=csv"]
        write_run(root / str(job), strategy, seed, smoothing, overrides=overrides, **kw)
        job += 1

    for seed in range(3):
        add("none", seed, [], reliability_png=seed == 0)
    for eps in (0.05, 0.2):
        for seed in range(3):
            add("uniform", seed, [f"smoothing.epsilon={eps}"], {"epsilon": eps})
    for seed in range(2):
        add("class_frequency", seed, [], drop=("test/ts/ece", "test/acc_few"))
    broken = root / str(job)
    broken.mkdir()
    (broken / "metrics.json").write_text('{"val": {"val/acc": 0.5}, "test": {"test/ac')
    return root


def load(path: Path):
    with pytest.warns(SkippedRunWarning, match=r"skipping .*/11/metrics\.json"):
        return load_runs([path])


def test_groups_by_strategy_and_swept_epsilon(sweep: Path) -> None:
    runs = load(sweep)
    assert len(runs) == 11
    result = compare(runs)
    assert result.keys == ("strategy", "smoothing.epsilon")
    rows = [(g.key["strategy"], g.key["smoothing.epsilon"], g.n) for g in result.groups]
    assert rows == [
        ("none", None, 3),
        ("class_frequency", None, 2),
        ("uniform", 0.05, 3),
        ("uniform", 0.2, 3),
    ]
    assert [g.seeds for g in result.groups] == [[0, 1, 2], [0, 1], [0, 1, 2], [0, 1, 2]]


def test_mean_and_sample_std_over_seeds(sweep: Path) -> None:
    result = compare(load(sweep), ["test/ece", "test/nll"])
    uniform_02 = result.groups[-1]
    for metric in ("test/ece", "test/nll"):
        name = metric.split("/")[1]
        values = [fake_metric("uniform", s, {"epsilon": 0.2}, name) for s in range(3)]
        assert uniform_02.mean[metric] == pytest.approx(np.mean(values))
        assert uniform_02.std[metric] == pytest.approx(np.std(values, ddof=1))


def test_default_metrics_include_present_optional_ones(sweep: Path) -> None:
    result = compare(load(sweep))
    assert result.metrics == (
        "test/acc",
        "test/ece",
        "test/adaece",
        "test/nll",
        "test/brier",
        "test/ts/ece",
        "test/acc_many",
        "test/acc_few",
    )  # no run reports test/acc_medium
    class_frequency = result.groups[1]
    assert class_frequency.count["test/ts/ece"] == 0
    assert math.isnan(class_frequency.mean["test/ts/ece"])


def test_markdown_table(sweep: Path) -> None:
    table = to_markdown(compare(load(sweep), ["test/acc", "test/nll", "test/ts/ece"]))
    lines = table.splitlines()
    assert lines[0] == (
        "| strategy | smoothing.epsilon | n | test/acc (%) | test/nll | test/ts/ece (%) |"
    )
    assert lines[1] == "|---|---|---|---|---|---|"
    acc = [fake_metric("none", s, {}, "acc") for s in range(3)]
    nll = [fake_metric("none", s, {}, "nll") for s in range(3)]
    ts_ece = [fake_metric("none", s, {}, "ece") / 2 for s in range(3)]
    assert lines[2] == (
        f"| none | - | 3 | {100 * np.mean(acc):.2f} ± {100 * np.std(acc, ddof=1):.2f} "
        f"| {np.mean(nll):.4f} ± {np.std(nll, ddof=1):.4f} "
        f"| {100 * np.mean(ts_ece):.2f} ± {100 * np.std(ts_ece, ddof=1):.2f} |"
    )
    assert lines[3].startswith("| class_frequency | - | 2 |")
    assert lines[3].endswith("| - |")  # test/ts/ece absent from every class_frequency run


def test_partly_reported_metric_is_marked(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "uniform", 0)
    write_run(tmp_path / "b", "uniform", 1, drop=("test/ts/ece",))
    result = compare(load_runs([tmp_path]), ["test/ts/ece"])
    (group,) = result.groups
    assert (group.n, group.count["test/ts/ece"]) == (2, 1)
    assert math.isnan(group.std["test/ts/ece"])
    assert to_markdown(result).splitlines()[2] == (
        f"| uniform | 2 | {100 * fake_metric('uniform', 0, {'epsilon': 0.1}, 'ece') / 2:.2f} (1/2) |"
    )


def test_sort_puts_the_best_first(sweep: Path) -> None:
    runs = load(sweep)
    by_acc = compare(runs, ["test/acc"], sort="test/acc").groups
    assert [g.mean["test/acc"] for g in by_acc] == sorted(
        (g.mean["test/acc"] for g in by_acc), reverse=True
    )
    by_ece = compare(runs, ["test/acc"], sort="test/ece").groups
    assert [g.mean["test/ece"] for g in by_ece] == sorted(g.mean["test/ece"] for g in by_ece)
    by_few = compare(runs, ["test/acc_few"], sort="test/acc_few").groups
    assert by_few[-1].key["strategy"] == "class_frequency"  # no value: last


def test_csv_has_one_row_per_group_with_raw_values(sweep: Path, tmp_path: Path) -> None:
    result = compare(load(sweep), ["test/acc", "test/ts/ece"])
    path = write_csv(result, tmp_path / "out" / "compare.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "strategy",
        "smoothing.epsilon",
        "n",
        "seeds",
        "test/acc_mean",
        "test/acc_std",
        "test/ts/ece_mean",
        "test/ts/ece_std",
    ]
    assert [(r["strategy"], r["smoothing.epsilon"], r["n"], r["seeds"]) for r in rows] == [
        ("none", "", "3", "0 1 2"),
        ("class_frequency", "", "2", "0 1"),
        ("uniform", "0.05", "3", "0 1 2"),
        ("uniform", "0.2", "3", "0 1 2"),
    ]
    for row, group in zip(rows, result.groups, strict=True):
        assert float(row["test/acc_mean"]) == group.mean["test/acc"]  # not in percent
        assert float(row["test/acc_std"]) == group.std["test/acc"]
    assert rows[1]["test/ts/ece_mean"] == rows[1]["test/ts/ece_std"] == ""


def test_plots_are_written(sweep: Path, tmp_path: Path) -> None:
    result = compare(load(sweep), ["test/ece", "test/acc"])
    tradeoff, reliability = write_plots(result, tmp_path / "plots", ["test/ece", "test/acc"])
    assert tradeoff.name == "tradeoff.png" and reliability.name == "reliability.png"
    for path in (tradeoff, reliability):
        height, width, _ = imread(path).shape
        assert width > 300 and height > 300
    assert imread(tradeoff).shape[1] > imread(tradeoff).shape[0]  # two panels side by side


def test_plot_metric_must_be_in_the_comparison(sweep: Path, tmp_path: Path) -> None:
    result = compare(load(sweep), ["test/acc"])
    with pytest.raises(CompareError, match=r"test/nll not in the comparison's metrics: test/acc"):
        write_plots(result, tmp_path, ["test/nll"])


def test_the_amount_comes_from_the_record_not_from_config_keys(tmp_path: Path) -> None:
    """Online smoothing's alpha is no smoothing amount compare knows how to read: only what
    the run reports (1 - alpha, once S is learned) places it; a run without the record is
    drawn flat."""
    for alpha in (0.3, 0.7):
        run_dir = write_run(tmp_path / f"a{alpha}", "online", 0, {"alpha": alpha}, overrides=[])
        record = json.loads((run_dir / "metrics.json").read_text())
        record["strategy"]["smoothing/applied_epsilon"] = 0.5 * (1 - alpha)
        (run_dir / "metrics.json").write_text(json.dumps(record))
    write_run(tmp_path / "none", "none", 0, overrides=[])
    result = compare(load_runs([tmp_path]), ["test/ece"])
    assert result.keys == ("strategy", "smoothing.alpha")  # found by diffing the configs
    amounts = {g.label(): smoothing_amount(g.runs[0]) for g in result.groups}
    assert amounts == {
        "none": None,
        "online, smoothing.alpha=0.3": pytest.approx(0.35),
        "online, smoothing.alpha=0.7": pytest.approx(0.15),
    }
    fig = tradeoff_figure(result, ["test/ece"])
    (online,) = fig.axes[0].containers  # one line for both alphas, along the amount
    assert list(online.lines[0].get_xdata()) == pytest.approx([0.15, 0.35])


def test_the_amount_is_what_the_run_reports_it_applied(tmp_path: Path) -> None:
    # Feedback's config holds bounds (epsilon_max 0.5), not the smoothing it applied.
    for seed, applied in ((0, 0.08), (1, 0.12)):
        run_dir = write_run(tmp_path / f"f{seed}", "uniform", seed, {"epsilon_max": 0.5})
        record = json.loads((run_dir / "metrics.json").read_text())
        record["strategy"]["smoothing/applied_epsilon"] = applied
        record["evaluation"] = {"checkpoint": "last", "epoch": 1}
        (run_dir / "metrics.json").write_text(json.dumps(record))
    runs = load_runs([tmp_path])
    assert [smoothing_amount(r) for r in runs] == pytest.approx([0.08, 0.12])
    fig = tradeoff_figure(compare(runs, ["test/ece", "test/acc"]))
    data_line = fig.axes[0].containers[0].lines[0]  # the errorbar's (x, mean) line
    assert list(data_line.get_xdata()) == pytest.approx([0.10])  # the group's mean, not 0.5
    assert evaluation_note(runs) == "test metrics from the last epoch of every run"


def test_mixed_evaluation_rules_are_warned(tmp_path: Path) -> None:
    for seed, rule in ((0, "last"), (1, "best")):
        run_dir = write_run(tmp_path / f"r{seed}", "uniform", seed)
        record = json.loads((run_dir / "metrics.json").read_text())
        record["evaluation"] = {"checkpoint": rule, "epoch": 1}
        (run_dir / "metrics.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="different checkpoint rules"):
        assert "mixed" in evaluation_note(load_runs([tmp_path]))


def test_runs_without_overrides_are_grouped_by_config_differences(tmp_path: Path) -> None:
    for seed in range(2):
        write_run(tmp_path / f"short{seed}", "uniform", seed)
        write_run(
            tmp_path / f"long{seed}", "uniform", seed, extra_config={"trainer": {"max_epochs": 9}}
        )
    result = compare(load_runs([tmp_path]))
    # Paths, data.seed and seed differ too, but they never define a group.
    assert result.keys == ("strategy", "trainer.max_epochs")
    assert [(g.key["trainer.max_epochs"], g.n) for g in result.groups] == [(2, 2), (9, 2)]


def test_a_difference_hidden_from_the_overrides_still_splits_groups(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "uniform", 0, overrides=["seed=0"])
    write_run(tmp_path / "b", "uniform", 1, {"epsilon": 0.3}, overrides=["seed=1"])
    result = compare(load_runs([tmp_path]))
    assert [g.key["smoothing.epsilon"] for g in result.groups] == [0.1, 0.3]


def test_a_config_key_missing_from_older_runs_is_no_difference(tmp_path: Path) -> None:
    write_run(tmp_path / "old", "uniform", 0, overrides=["seed=0"])
    new = {"trainer": {"max_epochs": 2, "enable_progress_bar": True}}
    write_run(tmp_path / "new", "uniform", 1, overrides=["seed=1"], extra_config=new)
    (group,) = compare(load_runs([tmp_path])).groups
    assert group.n == 2


def test_repeated_seed_in_a_group_is_warned(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "uniform", 0)
    write_run(tmp_path / "copy" / "a", "uniform", 0)
    with pytest.warns(UserWarning, match=r"strategy=uniform has repeated seeds \[0, 0\]: .*a, "):
        (group,) = compare(load_runs([tmp_path])).groups
    assert group.n == 2


def test_group_by_adds_a_key(sweep: Path) -> None:
    result = compare(load(sweep), ["test/acc"], group_by=["data.imbalance_ratio"])
    assert result.keys == ("strategy", "data.imbalance_ratio", "smoothing.epsilon")
    assert {g.key["data.imbalance_ratio"] for g in result.groups} == {10.0}


def test_group_option_from_overrides(tmp_path: Path) -> None:
    for data in ("mnist1d", "mnist1d_lt"):
        extra = {"data": {"imbalance_ratio": 1.0 if data == "mnist1d" else 10.0}}
        write_run(
            tmp_path / data,
            "none",
            0,
            overrides=[f"data={data}"],
            extra_config=extra,
            data_option=data,
        )
    result = compare(load_runs([tmp_path]), ["test/acc"])
    # data.imbalance_ratio follows from the data option: no column of its own.
    assert result.keys == ("strategy", "data")
    assert [g.key["data"] for g in result.groups] == ["mnist1d", "mnist1d_lt"]


def test_same_file_reached_twice_counts_once(sweep: Path) -> None:
    with pytest.warns(SkippedRunWarning):
        runs = load_runs([sweep, sweep / "0", sweep / "0" / "metrics.json"])
    assert len(runs) == 11


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "Expecting value"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"val": {}, "config": {}}', "no 'test' section"),
        ('{"test": {"test/acc": 0.5}, "config": null}', "no 'config' section"),
    ],
)
def test_unreadable_files_are_named_and_skipped(tmp_path: Path, content: str, reason: str) -> None:
    write_run(tmp_path / "good", "none", 0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text(content)
    with pytest.warns(SkippedRunWarning, match=rf"bad/metrics\.json: {reason}"):
        runs = load_runs([tmp_path])
    assert [r.path.name for r in runs] == ["good"]


def test_error_when_nothing_is_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match=r"no readable metrics\.json found under .*empty$"):
        load_runs([tmp_path / "empty"])
    (tmp_path / "empty" / "metrics.json").write_text("{")
    with (
        pytest.warns(SkippedRunWarning),
        pytest.raises(CompareError, match=r"under .*empty \(1 unreadable\)"),
    ):
        load_runs([tmp_path / "empty"])
    with pytest.raises(CompareError, match=r"no such file or directory: .*nowhere"):
        load_runs([tmp_path / "empty", tmp_path / "nowhere"])


def test_error_on_unknown_metric_lists_available_ones(sweep: Path) -> None:
    runs = load(sweep)
    with pytest.raises(CompareError, match=r"unknown metric\(s\) test/accuracy; available: .*"):
        compare(runs, ["test/acc", "test/accuracy"])
    with pytest.raises(CompareError, match=r"test/bogus; available: test/acc, test/acc_few, "):
        compare(runs, sort="test/bogus")


def test_error_on_bad_group_by_key(sweep: Path) -> None:
    runs = load(sweep)
    with pytest.raises(CompareError, match=r"unknown --group-by key 'data.ratio'; .*data\.seed"):
        compare(runs, group_by=["data.ratio"])
    with pytest.raises(CompareError, match=r"cannot group by 'seed'"):
        compare(runs, group_by=["seed"])


def test_cli_prints_table_and_writes_files(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    args = [str(sweep), "--sort", "test/ece", "--csv", str(out / "c.csv"), "--plot", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "warning: skipping" in captured.err and "11/metrics.json" in captured.err
    assert "| strategy | smoothing.epsilon | n | test/acc (%) | test/ece (%) |" in captured.out
    table_rows = [line for line in captured.out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[:2] for row in table_rows] == [
        ["| none", "-"],
        ["| uniform", "0.05"],
        ["| uniform", "0.2"],
        ["| class_frequency", "-"],
    ]  # the made-up test/ece rises with the smoothing amount
    assert sorted(p.name for p in out.iterdir()) == ["c.csv", "reliability.png", "tradeoff.png"]


def test_cli_errors_exit_2_with_a_message(sweep: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "error: no such file or directory" in capsys.readouterr().err
    assert main([str(sweep), "--metrics", "test/foo"]) == 2
    assert "error: unknown metric(s) test/foo; available:" in capsys.readouterr().err


def test_script_runs_as_a_program(sweep: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), str(sweep), "--metrics", "test/acc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| strategy | smoothing.epsilon | n | test/acc (%) |" in done.stdout


@pytest.mark.slow
def test_compare_two_real_runs(tmp_path: Path) -> None:
    common = [
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=2",
        "++trainer.limit_test_batches=2",
        "logger=none",
    ]
    for eps in (0.0, 0.2):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "adaptls.train",
                f"smoothing.epsilon={eps}",
                *common,
                f"hydra.run.dir={tmp_path / str(eps)}",
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
    result = compare(load_runs([tmp_path]))
    assert result.keys == ("strategy", "smoothing.epsilon")
    assert [(g.key["smoothing.epsilon"], g.n) for g in result.groups] == [(0.0, 1), (0.2, 1)]
    assert all(0.0 <= g.mean["test/ece"] <= 1.0 for g in result.groups)
    write_plots(result, tmp_path / "plots")
    assert (tmp_path / "plots" / "reliability.png").is_file()


def test_dropout_weight_decay_and_mix_are_swept_keys(tmp_path: Path) -> None:
    """experiment=interplay's axes: each becomes a column and splits the groups, whether
    it is on the command line (overrides) or only differs in the resolved config."""
    for dropout in (0.0, 0.2):
        for wd in (0.0, 0.05):
            for mix in ("none", "mixup"):
                mixing = {"_target_": f"adaptls.mix.{'MixUp' if mix == 'mixup' else 'NoMix'}"}
                extra = {
                    "model": {"_target_": "adaptls.models.CNN1D", "dropout": dropout},
                    "optimizer": {"name": "adamw", "weight_decay": wd},
                    "mix": mixing | ({"alpha": 0.2} if mix == "mixup" else {}),
                }
                for seed in range(2):
                    args = [f"model.dropout={dropout}", f"optimizer.weight_decay={wd}"]
                    write_run(
                        tmp_path / "cli" / f"{dropout}-{wd}-{mix}-{seed}",
                        "uniform",
                        seed,
                        overrides=[*args, f"mix={mix}", f"seed={seed}"],
                        extra_config=extra,
                    )
                    write_run(
                        tmp_path / "cfg" / f"{dropout}-{wd}-{mix}-{seed}",
                        "uniform",
                        seed,
                        extra_config=extra,
                    )
    cli = compare(load_runs([tmp_path / "cli"]), ["test/acc"])
    assert cli.keys == ("strategy", "model.dropout", "optimizer.weight_decay", "mix")
    assert len(cli.groups) == 8 and all(g.n == 2 for g in cli.groups)
    # scripts/interplay_figure.py draws those groups: one column per combination
    script = runpy.run_path(str(ROOT / "scripts" / "interplay_figure.py"))
    fig = script["interplay_figure"]([tmp_path / "cli"])
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert ticks == [
        "none",
        "dropout",
        "wd",
        "mixup",
        "dropout+wd",
        "dropout+mixup",
        "wd+mixup",
        "dropout+wd+mixup",
    ]
    # 8 groups: a mean marker and the seeds' dots each
    assert len(fig.axes[0].collections) == 2 * 8
    # the third panel: confidence - accuracy in points (these fake runs report no confidence)
    assert len(fig.axes) == 3 and not fig.axes[2].collections
    assert script["_gap"]({"test/confidence": 0.7, "test/acc": 0.8}) == pytest.approx(-10.0)
    cfg = compare(load_runs([tmp_path / "cfg"]), ["test/acc"])
    assert set(cfg.keys) == {"strategy", "model.dropout", "optimizer.weight_decay", "mix._target_"}
    assert len(cfg.groups) == 8 and all(g.n == 2 for g in cfg.groups)
