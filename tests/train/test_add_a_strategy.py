"""Adding a strategy takes one file and one yaml: a throwaway soft-target strategy, written
into a temporary package (no ``__init__.py``, nothing in adaptls edited) with its yaml in a
temporary config directory, trains, is compared and is tuned by ``hparams_search``; and so
does a loss of the other kind, a throwaway criterion (no soft target), which trains.

Everything else comes through the interface: the registry (``name``), the search space
(``search_space``), the run figures (``figures()``), the hyperparameters in metrics.json
(read from the constructor) and the smoothing amount on the trade-off plot (what the base
class records as applied).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from adaptls.compare import compare, load_runs, main, smoothing_amount
from adaptls.run.config import ConfigError, check_search_space

STRATEGY_FILE = '''
"""A throwaway strategy: uniform smoothing with a floor."""

from typing import Any, ClassVar

import torch

from adaptls.smoothing.base import SmoothingStrategy, SoftTarget, check_epsilon
from adaptls.smoothing.figures import PerClassBars


class FlooredSmoothing(SmoothingStrategy):
    """t = (1 - e) onehot(y) + e / K with e = max(epsilon, floor)."""

    name = "floored"
    search_space: ClassVar[dict[str, str]] = {"epsilon": "interval(0.0, 0.3)"}

    def __init__(self, epsilon: float = 0.1, floor: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.floor = check_epsilon("floor", floor)

    def smoothing(self, logits, targets, indices=None):
        return SoftTarget(max(self.epsilon, self.floor))

    def figures(self):
        e = torch.full((self.num_classes,), max(self.epsilon, self.floor))
        return {"smoothing/floored": PerClassBars(e, "e")}
'''
YAML_FILE = """\
_target_: throwaway_strategies.floored.FlooredSmoothing
epsilon: 0.2
floor: 0.05
"""


CRITERION_FILE = '''
"""A throwaway criterion: cross-entropy minus beta times the predictive entropy."""

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from adaptls.smoothing.base import Criterion, check_nonnegative


class EntropyPenalty(Criterion):
    """loss_i = CE_i - beta * s(epoch) * H(p_i) (a confidence penalty); 0 on ignored rows."""

    name = "entropy_penalty"
    search_space: ClassVar[dict[str, str]] = {"beta": "interval(0.0, 1.0)"}

    def __init__(self, beta: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_nonnegative("beta", beta)

    def loss(self, x, y, indices, reduction):
        counted = y != self.ignore_index
        log_p = F.log_softmax(x.float(), dim=1)
        ce = F.nll_loss(log_p, torch.where(counted, y, 0), reduction="none")
        entropy = -(log_p.exp() * log_p).sum(1)
        rows = torch.where(counted, ce - self.beta * self.schedule_factor * entropy, 0.0)
        if reduction == "none":
            return rows
        return rows.sum() if reduction == "sum" else rows.sum() / counted.sum().clamp_min(1)

    def log_values(self):
        return {"smoothing/beta": self.beta * self.schedule_factor}
'''
CRITERION_YAML = """\
_target_: throwaway_strategies.entropy_penalty.EntropyPenalty
beta: 0.1
"""


@pytest.fixture
def added(tmp_path: Path) -> dict[str, Path]:
    """The files (a namespace package on PYTHONPATH) and the yamls (a config directory on
    Hydra's search path): all that adding a strategy, or a criterion, takes."""
    package = tmp_path / "code" / "throwaway_strategies"
    package.mkdir(parents=True)
    (package / "floored.py").write_text(textwrap.dedent(STRATEGY_FILE))
    (package / "entropy_penalty.py").write_text(textwrap.dedent(CRITERION_FILE))
    conf = tmp_path / "conf" / "smoothing"
    conf.mkdir(parents=True)
    (conf / "floored.yaml").write_text(YAML_FILE)
    (conf / "entropy_penalty.yaml").write_text(CRITERION_YAML)
    return {"code": tmp_path / "code", "conf": tmp_path / "conf"}


def test_without_a_search_space_the_search_stops_naming_both_ways(compose_train, tmp_path):
    conf = tmp_path / "conf" / "smoothing"
    conf.mkdir(parents=True)
    (conf / "plain.yaml").write_text("_target_: adaptls.smoothing.none.NoSmoothing\n")
    cfg = compose_train(
        "hparams_search=epsilon",
        "smoothing=plain",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        output_dir=tmp_path / "run",
        hydra=True,
    )
    assert not cfg.hydra.sweeper.params  # resolved: the class declares no search_space
    with pytest.raises(ConfigError, match=r"no search space for smoothing=plain.*search_space.*"):
        check_search_space()


@pytest.mark.slow
def test_a_throwaway_strategy_trains_compares_and_is_tuned(
    run_cli, added, tmp_path, capsys, tiny, small
):
    env_path = os.pathsep.join([str(added["code"]), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path  # the CLI's subprocesses import the new package
    try:
        common = [
            "smoothing=floored",
            f"hydra.searchpath=[file://{added['conf']}]",
            *tiny,
            *small,
            "logger=none",
        ]
        sweep = tmp_path / "sweep"
        result = run_cli(
            "-m", "seed=0,1", f"hydra.sweep.dir={sweep}", *common, cwd=tmp_path, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        search = tmp_path / "search"
        result = run_cli(
            "-m",
            "hparams_search=epsilon",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            f"hydra.sweep.dir={search}",
            *common,
            cwd=tmp_path,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        os.environ["PYTHONPATH"] = env_path.split(os.pathsep, 1)[1]

    # train: the record holds the name, the hyperparameters read from the constructor and
    # the smoothing it applied; the figures() hook drew its picture.
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    assert record["strategy"]["name"] == "floored"
    assert record["strategy"]["hparams"] == {"epsilon": 0.2, "floor": 0.05}
    assert record["strategy"]["smoothing/applied_epsilon"] == pytest.approx(0.2)
    assert (sweep / "0" / "plots" / "smoothing_floored.png").is_file()

    # compare: a row for the strategy, at the smoothing amount it reported
    runs = load_runs([sweep])
    (group,) = compare(runs, ["test/acc"]).groups
    assert group.key["strategy"] == "floored" and group.n == 2
    assert [smoothing_amount(run) for run in runs] == pytest.approx([0.2, 0.2])
    assert main([str(sweep), "--plot", str(tmp_path / "plots")]) == 0
    assert "| floored |" in capsys.readouterr().out
    assert (tmp_path / "plots" / "tradeoff.png").is_file()

    # hparams_search: the class's search space was searched
    best = yaml.safe_load((search / "optimization_results.yaml").read_text())["best_params"]
    assert set(best) == {"smoothing.epsilon"} and 0.0 <= best["smoothing.epsilon"] <= 0.3
    trials = [json.loads(p.read_text()) for p in search.glob("*/metrics.json")]
    assert len(trials) == 2
    assert {t["strategy"]["name"] for t in trials} == {"floored"}


@pytest.mark.slow
def test_a_throwaway_criterion_trains_through_the_entry_point(
    run_cli, added, tmp_path, tiny, small
):
    """A loss of the other kind (no soft target): one file + one yaml, trained by
    ``adaptls.train`` with its hyperparameter set from the command line."""
    env_path = os.pathsep.join([str(added["code"]), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path
    try:
        run = tmp_path / "run"
        result = run_cli(
            "smoothing=entropy_penalty",
            "smoothing.beta=0.3",
            f"hydra.searchpath=[file://{added['conf']}]",
            f"hydra.run.dir={run}",
            *tiny,
            *small,
            "logger=none",
            cwd=tmp_path,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        os.environ["PYTHONPATH"] = env_path.split(os.pathsep, 1)[1]
    record = json.loads((run / "metrics.json").read_text())
    assert record["strategy"]["name"] == "entropy_penalty"
    assert record["strategy"]["hparams"] == {"beta": 0.3}
    assert record["strategy"]["smoothing/beta"] == pytest.approx(0.3)
    assert record["strategy"]["smoothing/applied_epsilon"] is None  # no soft target
