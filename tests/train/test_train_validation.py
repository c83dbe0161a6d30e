"""A bad override fails before training, names the key and what is allowed, writes nothing.

``train`` builds (and so validates) every component before it loads data, trains or
starts a logger; the CLI turns the error into exit status 2 with the message in its log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import socket
import sys
from pathlib import Path

import hydra
import pytest
import torch
from hydra.errors import MissingConfigException

from adaptls.run.config import ConfigError, accepted_arguments
from adaptls.train import CONFIG_DIR, build, train

BAD_VALUES = {
    # override: fragments the message must contain
    "smoothing.epsilon=1.5": ["smoothing.epsilon", "[0, 1)", "1.5"],
    "data.imbalance_ratio=-3": ["data.imbalance_ratio", ">= 1", "-3"],
    "data.batch_size=0": ["data.batch_size", ">= 1", "0"],
    "model.dropout=2": ["model.dropout", "[0, 1)", "2"],
    "optimizer.lr=-1": ["optimizer", "-1"],
    "+smoothing.typo=1": ["smoothing", "typo"],
    "trainer.precision=bogus": ["trainer", "bogus"],
    "callbacks.model_checkpoint.save_top_k=-5": ["callbacks.model_checkpoint", "-5"],
    "cpu_threads=0": ["cpu_threads", ">= 1", "0"],
    "callbacks.temperature_scaling.bounds=[100,1]": [
        "callbacks.temperature_scaling.bounds",
        "0 < T_min < T_max",
        "[100, 1]",
    ],
    "callbacks.temperature_scaling.bounds=[0,1,2]": [
        "callbacks.temperature_scaling.bounds",
        "(T_min, T_max)",
        "[0, 1, 2]",
    ],
    "eval_checkpoint=first": ["eval_checkpoint", "last", "best", "'first'"],
    "ckpt_path=no/such/run/last.ckpt": ["ckpt_path", "'no/such/run/last.ckpt'", "last", "null"],
}


@pytest.mark.parametrize("group", ["smoothing", "model", "data", "optimizer"])
def test_an_option_a_component_lacks_is_refused_with_its_options(compose_train, tmp_path, group):
    """``+smoothing.epsilon=0.2`` with class_frequency (whose keys are epsilon_head,
    epsilon_tail, ...): the message names the key, the class and every option it takes."""
    cfg = compose_train(f"+{group}.not_an_option=1", "logger=none", output_dir=tmp_path)
    target = hydra.utils.get_object(cfg[group]._target_)
    with pytest.raises(ConfigError) as error:
        build(cfg)
    message = str(error.value)
    name = cfg[group]._target_.rsplit(".", 1)[-1]
    assert message.startswith(f"{group}.not_an_option is not an option of {name}; its options: ")
    listed = message.split("its options: ", 1)[1].split(", ")
    declared = [k for k in cfg[group] if not k.startswith("_") and k != "not_an_option"]
    assert (
        set(declared)
        <= {n.lstrip("*") for n in listed}
        <= {n.lstrip("*") for n in accepted_arguments(target)}
    )


def test_the_options_of_a_class_include_those_its_init_passes_to_its_bases():
    from adaptls.smoothing import ClassFrequencySmoothing

    names = accepted_arguments(ClassFrequencySmoothing)
    assert names[:2] == ["epsilon_head", "epsilon_tail"]
    assert {"ignore_index", "schedule"} <= set(names)  # Strategy's, through **kwargs


def written(output_dir: Path) -> list[str]:
    if not output_dir.exists():
        return []
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*"))


@pytest.mark.parametrize("override", list(BAD_VALUES))
def test_a_bad_value_fails_before_training_naming_the_key(compose_train, tmp_path, override):
    output_dir = tmp_path / "run"
    cfg = compose_train(override, output_dir=output_dir)  # default logger: W&B offline
    with pytest.raises(ConfigError) as error:
        train(cfg)
    for fragment in BAD_VALUES[override]:
        assert fragment in str(error.value), f"{fragment!r} not in {str(error.value)!r}"
    assert written(output_dir) == []  # no checkpoint, no metrics.json, no wandb folder


def test_ckpt_path_must_be_a_file_last_or_null(compose_train, tmp_path, small):
    """A folder is refused as a missing file is, and a file that is not a checkpoint; a
    checkpoint passes build (fit loads it), as ``last`` does with no last.ckpt yet (see
    below)."""
    for path in (tmp_path, tmp_path / "missing.ckpt"):
        cfg = compose_train(f"ckpt_path={path}", *small, "logger=none", output_dir=tmp_path)
        with pytest.raises(ConfigError, match=f"no checkpoint file at '{path}'"):
            build(cfg)
    (tmp_path / "epoch=0.ckpt").touch()  # empty: not a checkpoint
    cfg = compose_train(
        f"ckpt_path='{tmp_path / 'epoch=0.ckpt'}'", *small, "logger=none", output_dir=tmp_path
    )
    with pytest.raises(ConfigError, match=r"epoch=0\.ckpt is not a checkpoint torch\.save wrote"):
        build(cfg)
    torch.save({}, tmp_path / "epoch=0.ckpt")  # what build reads of it: no process count
    for value in (f"'{tmp_path / 'epoch=0.ckpt'}'", "last", "null"):
        cfg = compose_train(f"ckpt_path={value}", *small, "logger=none", output_dir=tmp_path)
        build(cfg)


def test_best_evaluation_without_a_checkpoint_callback_fails_before_training(
    compose_train, tmp_path
):
    output_dir = tmp_path / "run"
    cfg = compose_train(
        "eval_checkpoint=best", "callbacks.model_checkpoint=null", output_dir=output_dir
    )
    with pytest.raises(
        ConfigError, match=r"eval_checkpoint=best needs callbacks\.model_checkpoint"
    ):
        train(cfg)
    assert written(output_dir) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["smoothing.schedule=cosine", "trainer.max_epochs=-1", "+trainer.max_steps=50"],
        ["smoothing=self_distill", "trainer.max_epochs=null", "+trainer.max_steps=50"],
    ],
)
def test_a_run_of_unknown_length_fails_if_smoothing_needs_its_length(
    compose_train, tmp_path, overrides
):
    # Instead of silently treating the run as one epoch long (cosine at 0 after epoch 0).
    output_dir = tmp_path / "run"
    cfg = compose_train(*overrides, output_dir=output_dir)
    with pytest.raises(ConfigError, match=r"needs the run's length in epochs, got max_epochs="):
        train(cfg)
    assert written(output_dir) == []


@pytest.mark.parametrize("group", ["smoothing", "data"])
def test_an_unknown_option_fails_listing_the_available_ones(compose_train, tmp_path, group):
    with pytest.raises(MissingConfigException) as error:
        compose_train(f"{group}=nope", output_dir=tmp_path / "run")
    message = str(error.value)
    assert f"{group}/nope" in message
    for option in (p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")):
        assert option in message


@pytest.mark.slow
def test_the_cli_exits_with_status_2_and_writes_only_its_log(run_cli, tmp_path):
    """Through the console script, as a user types it."""
    run_dir = tmp_path / "run"
    script = shutil.which("adaptls-train", path=str(Path(sys.executable).parent))
    assert script is not None, "the console script adaptls-train is not installed"
    result = run_cli(
        "smoothing.epsilon=1.5", f"hydra.run.dir={run_dir}", cwd=tmp_path, program=[script]
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = "smoothing.epsilon must be a number in [0, 1), got 1.5"
    assert message in result.stdout + result.stderr
    assert message in (run_dir / "train.log").read_text()
    assert {p.name for p in run_dir.iterdir()} == {"train.log", ".hydra"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without CUDA")
@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_a_gpu_trainer_without_cuda_fails_at_build_saying_what_to_do(
    compose_train, tmp_path, trainer
):
    output_dir = tmp_path / "run"
    cfg = compose_train(f"trainer={trainer}", output_dir=output_dir)
    with pytest.raises(ConfigError) as error:
        train(cfg)
    message = str(error.value)
    assert message.startswith(f"trainer={trainer} (trainer.accelerator=gpu) needs a CUDA GPU")
    assert "CPU build" in message if torch.version.cuda is None else "no CUDA device" in message
    assert "TORCH=" in message and "trainer=cpu" in message
    assert written(output_dir) == []


@pytest.mark.parametrize("trainer", ["ddp_cpu", "ddp"])
def test_a_strategy_that_cannot_run_distributed_fails_at_build(compose_train, tmp_path, trainer):
    # OnlineSmoothing(topk=...) raised NotImplementedError at its first epoch end, a whole
    # epoch into a DDP run. trainer=ddp builds on a CPU machine too (the check comes before
    # any device is used): accelerator=cpu keeps its two processes.
    output_dir = tmp_path / "run"
    overrides = ["smoothing=online", "smoothing.topk=4", f"trainer={trainer}"]
    cfg = compose_train(*overrides, "trainer.accelerator=cpu", output_dir=output_dir)
    with pytest.raises(ConfigError) as error:
        train(cfg)
    assert str(error.value) == (
        f"smoothing=online cannot train on 2 processes (trainer={trainer}): topk=4 does not "
        "merge the ranks' running sums yet: use topk=None (null in a config: the dense S) "
        "for distributed training; or train on one process (trainer=cpu or trainer=gpu)"
    )
    assert written(output_dir) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["smoothing=online", "smoothing.topk=4", "trainer=cpu"],  # top-k on one process
        ["smoothing=online", "trainer=ddp_cpu"],  # the dense S under DDP
    ],
)
def test_what_can_run_is_not_refused(compose_train, tmp_path, small, overrides):
    cfg = compose_train(*overrides, *small, "logger=none", output_dir=tmp_path / "run")
    _, module, trainer = build(cfg)
    assert trainer.world_size == (2 if "trainer=ddp_cpu" in overrides else 1)
    assert module.strategy.limits.distributed is None or trainer.world_size == 1


def test_resuming_from_a_missing_last_checkpoint_says_it_starts_from_scratch(
    compose_train, tmp_path, small, caplog
):
    """Kept on purpose (a requeued cluster job passes ckpt_path=last from its first start),
    but said: one line with the path looked at."""
    output_dir = tmp_path / "run"
    cfg = compose_train("ckpt_path=last", *small, "logger=none", output_dir=output_dir)
    with caplog.at_level(logging.INFO, logger="adaptls"):
        build(cfg)
    expected = (
        f"ckpt_path=last: no last.ckpt found at {output_dir / 'checkpoints' / 'last.ckpt'}; "
        "the run starts from scratch"
    )
    assert [r.getMessage() for r in caplog.records if r.name.startswith("adaptls.")] == [expected]
    assert caplog.records[-1].levelno == logging.WARNING

    caplog.clear()  # with a last checkpoint there, nothing to say
    (output_dir / "checkpoints").mkdir(parents=True)
    torch.save({}, output_dir / "checkpoints" / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="adaptls"):
        build(cfg)
    assert not [r for r in caplog.records if r.name.startswith("adaptls.")]


def test_resuming_without_a_checkpoint_callback_says_it_starts_from_scratch(
    compose_train, tmp_path, small, caplog
):
    cfg = compose_train(
        "ckpt_path=last",
        "callbacks.model_checkpoint=null",
        "callbacks.last_checkpoint=null",
        *small,
        "logger=none",
        output_dir=tmp_path / "run",
    )
    with caplog.at_level(logging.INFO, logger="adaptls"):
        build(cfg)
    assert (
        "ckpt_path=last: no last.ckpt found at the checkpoint callback's folder "
        "(callbacks.last_checkpoint sets none); the run starts from scratch"
    ) in caplog.text


@pytest.mark.slow
def test_the_cli_refuses_a_distributed_top_k_run_before_starting_processes(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "smoothing=online",
        "smoothing.topk=4",
        "trainer=ddp_cpu",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = "smoothing=online cannot train on 2 processes (trainer=ddp_cpu): topk=4 does not"
    assert message in (run_dir / "train.log").read_text()
    assert {p.name for p in run_dir.iterdir()} == {"train.log", ".hydra"}


@pytest.mark.slow
def test_a_first_start_with_ckpt_path_last_trains_as_a_fresh_run(
    compose_train, tmp_path, small, tiny, caplog, recwarn
):
    """The cluster requeue pattern: ckpt_path=last from the first start on. Our one warning
    line and no other: not Lightning's "no last checkpoint available ... HINT: Set
    ModelCheckpoint(..., save_last=True)", which our checkpoint callback already sets."""
    metrics, said = {}, {}
    for ckpt_path in ("null", "last"):
        output_dir = tmp_path / ckpt_path
        cfg = compose_train(
            f"ckpt_path={ckpt_path}", *small, *tiny, "logger=none", output_dir=output_dir
        )
        caplog.clear()
        recwarn.clear()
        with contextlib.redirect_stdout(io.StringIO()), caplog.at_level(logging.WARNING):
            train(cfg)
        metrics[ckpt_path] = json.loads((output_dir / "metrics.json").read_text())["test"]
        said[ckpt_path] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        said[ckpt_path] += [str(w.message) for w in recwarn]
    assert metrics["last"] == metrics["null"]
    assert said["last"] == [
        *said["null"],
        f"ckpt_path=last: no last.ckpt found at {tmp_path / 'last' / 'checkpoints' / 'last.ckpt'}"
        "; the run starts from scratch",
    ]


@pytest.mark.slow
def test_a_download_that_cannot_connect_is_one_error_line(run_cli, tmp_path):
    """data=cifar10 with nothing cached and no network (here: its URL on a closed localhost
    port): one line with the URL, the error and where to put the file, no traceback, no
    retries of a connection that never came up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    offline = (
        "import adaptls.data.cifar as cifar, dataclasses; "
        "cifar.CIFAR10DataModule.remote = dataclasses.replace("
        f"cifar.CIFAR10DataModule.remote, url={url!r}); "
        "from adaptls.train import main; main()"
    )
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    result = run_cli(
        "data=cifar10",
        "model=resnet20",
        f"paths.data_dir={data_dir}",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        program=[sys.executable, "-c", offline],
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    expected = f"could not download {url}: cannot connect (ConnectionRefusedError: "
    errors = [line for line in output.splitlines() if "could not download" in line]
    assert len(errors) == 1 and expected in errors[0], output
    assert f"put that file at {data_dir / 'cifar-10-python.tar.gz'} (md5 " in errors[0]
    assert "Traceback" not in output and "retry" not in output, output
    assert "[ERROR] - could not download" in (run_dir / "train.log").read_text()
