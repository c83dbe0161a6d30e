"""Fixtures of the training-path tests: the real conf/ composed by Hydra, tiny run settings,
W&B kept offline in temporary folders, the CLI as a subprocess, offline W&B run files."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from adaptls.train import CONFIG_DIR

# The combination tests import their generator (combinations.py) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# One epoch of two batches: seconds per run.
TINY = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
]
# A small Gaussian mixture and a small MLP: no data generation cost.
SMALL = [
    "data=synthetic",
    "data.num_train=600",
    "data.num_test=200",
    "data.batch_size=64",
    "model=mlp",
    "model.hidden=[32]",
]


@pytest.fixture(scope="module")
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="module")
def small() -> list[str]:
    return list(SMALL)


@pytest.fixture(scope="module", autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """W&B offline and silent, with every folder it writes in a temporary directory."""
    root = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            (root / name).mkdir()
            mp.setenv(name, str(root / name))
        mp.setenv("WANDB_MODE", "offline")  # never online, whatever a config says
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("ADAPTLS_DATA_DIR", str(root / "data"))
        mp.delenv("HYDRA_FULL_ERROR", raising=False)
        yield


@pytest.fixture(autouse=True)
def _reset_hydra_config() -> Iterator[None]:
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture(scope="module")
def compose_train() -> Callable[..., DictConfig]:
    """``compose_train(*overrides, output_dir=...)``: conf/train.yaml as ``adaptls.train``
    would see it (hydra node removed), with ``${hydra:runtime.output_dir}`` resolving to
    ``output_dir``. ``hydra=True`` keeps the hydra node."""

    def compose_train(*overrides: str, output_dir: Path, hydra: bool = False) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[f"hydra.runtime.output_dir={output_dir}", *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        if not hydra:
            with open_dict(cfg):
                del cfg.hydra
        return cfg

    return compose_train


@pytest.fixture(scope="module")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli(*args, cwd=..., program=None)``: ``python -m adaptls.train *args`` (or the
    given program) in ``cwd``, stdout and stderr captured as text."""

    def run_cli(
        *args: str, cwd: Path, program: list[str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        command = [*(program or [sys.executable, "-m", "adaptls.train"]), *args]
        # Its own process group: on a timeout every process of the run goes (a DDP run's
        # other ranks would otherwise outlive the test), then TimeoutExpired is raised.
        with subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
                raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    return run_cli


@pytest.fixture(scope="module")
def read_wandb_run() -> Callable[[Path], dict[str, Any]]:
    """``read_wandb_run(run_dir)``: the group, job type, config, summary, metric definitions,
    history and exit code recorded in an offline run's ``run-<id>.wandb`` file (what
    ``wandb sync`` would upload)."""
    return read_offline_run


def read_offline_run(run_dir: Path, wait_s: float = 30.0) -> dict[str, Any]:
    """The run's records; waits (up to ``wait_s``) for W&B's service process, which writes
    the file asynchronously, to have written the exit record."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            run = _read_offline_run_once(run_dir)
        except DecodeError:  # caught mid-write: the last record is not complete yet
            if time.monotonic() > deadline:
                raise
        else:
            if run["exit_code"] is not None or time.monotonic() > deadline:
                return run
        time.sleep(0.2)


def _read_offline_run_once(run_dir: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    run: dict[str, Any] = {
        "group": None,
        "job_type": None,
        "config": {},
        "summary": {},
        "metrics": {},
        "history": [],
        "exit_code": None,
    }
    for data in _log_records(path.read_bytes()):
        record = wandb_internal_pb2.Record.FromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["group"] = record.run.run_id, record.run.run_group
            run["job_type"] = record.run.job_type
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            for item in record.summary.update:  # W&B's own entries start with "_"
                if not (item.key or item.nested_key[0]).startswith("_"):
                    _put(run["summary"], item)
        elif kind == "metric":  # define_metric: name (or glob) -> kept summaries
            metric = record.metric
            kept = [k for k in ("min", "max", "mean", "last") if getattr(metric.summary, k)]
            run["metrics"][metric.name or metric.glob_name] = kept
        elif kind == "history":
            run["history"].append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def _put(values: dict[str, Any], item: Any) -> None:
    """An item of a summary or history record into ``values``: under its key, or nested
    under its nested key (a metric's summary, an image's fields)."""
    keys = [item.key] if item.key else list(item.nested_key)
    for key in keys[:-1]:
        values = values.setdefault(key, {})
    values[keys[-1]] = json.loads(item.value_json)


def _log_records(data: bytes) -> Iterator[bytes]:
    """The records of a W&B transaction log: a 7-byte header (``:W&B``, magic, version),
    then LevelDB-log blocks of 32 KiB, each record split into fragments with a 7-byte header
    (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    assert data[:4] == b":W&B", f"not a W&B run file (header {data[:7]!r})"
    block, pos, parts = 32768, 7, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            yield b"".join(parts)
            parts = []
