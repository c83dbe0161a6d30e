"""One benchmark run of the real entry point, kept if it finished: ``python -m
adaptls.train`` in a subprocess (``runner=process``, the default: each run in a fresh
interpreter) or :func:`adaptls.train.train` on the config Hydra composes from the same
overrides, in this process (``runner=inline``: no interpreter start per run, for small
runs and tests).

A run's directory holds ``metrics.json`` once it has finished, and ``overrides.json``
(what it was asked to run) from its start; a run whose directory has both, with the same
overrides, is never run again (what makes a killed benchmark resumable). A run killed
midway, or one of other overrides, is started afresh: its directory is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class RunFailed(RuntimeError):
    """adaptls.train exited with an error (its last lines of output are in the message)."""


def train_command(overrides: Sequence[str], run_dir: Path) -> list[str]:
    """The command line of one run (``hydra.run.dir`` pins its output directory)."""
    return [sys.executable, "-m", "adaptls.train", *overrides, f"hydra.run.dir={run_dir}"]


ASKED = "overrides.json"


def finished(run_dir: Path, overrides: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The run's ``metrics.json`` record, or None if it has not finished (or, given
    ``overrides``, was asked to run other ones)."""
    try:
        asked = None if overrides is None else json.loads((run_dir / ASKED).read_text())
        if asked is not None and asked != list(overrides):
            return None
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


RUNNERS = ("process", "inline")


def run(
    overrides: Sequence[str], run_dir: Path, log: Any = print, runner: str = "process"
) -> dict[str, Any]:
    """Run adaptls.train with ``overrides`` into ``run_dir`` unless it has finished there;
    returns its ``metrics.json`` record."""
    record = finished(run_dir, overrides)
    if record is not None:
        return record
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run killed midway: start it again from nothing
    run_dir.mkdir(parents=True)
    (run_dir / ASKED).write_text(json.dumps(list(overrides)))
    log(f"  run {run_dir.name}: {' '.join(overrides)}")
    if runner == "inline":
        return run_inline(overrides, run_dir)
    command = train_command(overrides, run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    record = finished(run_dir)
    if done.returncode != 0 or record is None:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RunFailed(f"{' '.join(command)} exited with {done.returncode}:\n{tail}")
    return record


def run_inline(overrides: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """:func:`adaptls.train.train` in this process on ``conf/train.yaml`` composed with
    ``overrides`` (``${hydra:runtime.output_dir}`` is ``run_dir``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from adaptls.train import CONFIG_DIR, train

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hydra.runtime.output_dir={run_dir}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg.hydra
        train(cfg)
    except Exception as err:
        raise RunFailed(f"adaptls.train {' '.join(overrides)} failed: {err!r}") from err
    finally:
        HydraConfig.instance().cfg = None
    record = finished(run_dir)
    if record is None:
        raise RunFailed(f"adaptls.train {' '.join(overrides)} wrote no metrics.json")
    return record
