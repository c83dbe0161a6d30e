"""trainer=ddp_cpu end to end: two gloo processes, one output directory, one metrics.json,
one W&B run, one closing table."""

from __future__ import annotations

import json
import math

import pytest

from adaptls.train import build


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_cpu_run_writes_one_output_dir_and_one_metrics_json(
    run_cli, read_wandb_run, tmp_path, tiny, small
):
    run_dir = tmp_path / "run"
    result = run_cli(
        "trainer=ddp_cpu", "smoothing=online", f"hydra.run.dir={run_dir}", *tiny, *small,
        cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Starting with 2 processes" in output
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran in the same directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no second output dir
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json")] == [
        run_dir.relative_to(tmp_path) / "metrics.json"
    ]
    assert result.stdout.count("| test |") == 1  # rank 0 alone reports

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["trainer"]["devices"] == 2
    for name, value in {**metrics["val"], **metrics["test"]}.items():
        assert value is not None and math.isfinite(value), name
    assert metrics["strategy"]["name"] == "online"

    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert read_wandb_run(wandb_run)["exit_code"] == 0


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.parametrize("name", ["online", "feedback"])
def test_ddp_cpu_with_mixup_and_a_stateful_strategy_finishes(name, run_cli, tmp_path, tiny, small):
    """Mixup's mixed batches on two gloo processes, with a strategy whose state is reduced
    across ranks (online: per-class soft labels at each epoch end; feedback: epsilon from
    fit's validation passes); two epochs, so the second trains with the first's state."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "trainer=ddp_cpu", "mix=mixup", f"smoothing={name}", f"hydra.run.dir={run_dir}",
        *tiny, "trainer.max_epochs=2", *small,
        cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Starting with 2 processes" in output

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["trainer"]["devices"] == 2
    assert metrics["config"]["mix"]["_target_"] == "adaptls.mix.MixUp"
    assert metrics["strategy"]["name"] == name
    assert metrics["evaluation"]["epoch"] == 1
    for key, value in {**metrics["val"], **metrics["test"]}.items():
        assert value is not None and math.isfinite(value), key


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_cpu_on_three_processes_reports_one_process_metrics_of_its_weights(
    run_cli, compose_train, tmp_path
):
    """trainer=ddp_cpu trainer.devices=3 on splits that 3 does not divide (77 validation,
    203 test rows): metrics.json holds what one process measures on its final weights."""
    run_dir = tmp_path / "run"
    common = [
        "smoothing=feedback", "data=synthetic", "data.num_classes=7", "data.num_train=770",
        "data.num_test=203", "data.batch_size=16", "model=mlp", "model.hidden=[32]",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "logger=none",
        "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    result = run_cli("trainer=ddp_cpu", "trainer.devices=3", *common, f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    record = json.loads((run_dir / "metrics.json").read_text())

    cfg = compose_train(*common, "trainer=cpu", output_dir=tmp_path / "one")
    datamodule, module, trainer = build(cfg)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=last, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=last, verbose=False)[0]
    assert val["val/acc"] * 77 == pytest.approx(round(val["val/acc"] * 77))  # all 77 rows
    assert set(val) == set(record["val"]) and set(test) == set(record["test"])
    # The same rows, batched and summed in another order (float32 sums of <= 203 terms of
    # size <= 1: 203 * 2^-24 ~ 1.2e-5).
    for name, value in {**val, **test}.items():
        expected = {**record["val"], **record["test"]}[name]
        assert value == pytest.approx(expected, rel=1.2e-5, abs=1.2e-5), name
