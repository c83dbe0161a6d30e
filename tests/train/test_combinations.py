"""Every combination a user can ask for, run through ``adaptls.train`` as a user runs it.

The axes come from the registries (:mod:`combinations`): a strategy, schedule or mixer is in
these tests by being registered. Each case is a short run of the real entry point with its
default callbacks (progress bar, checkpoints, temperature scaling, figures) and Lightning's
sanity check on, on one tiny dataset shared by every case, and checks what the run reports
(metrics.json, the checkpoint, the log), not only that it ended.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from combinations import (
    composer_x_stateful_base,
    linear_path,
    mixers,
    own_state,
    strategy_x_mixer,
    strategy_x_schedule,
)
from hydra.utils import get_class
from omegaconf import OmegaConf

from adaptls.data import SyntheticDataModule
from adaptls.smoothing import SmoothingStrategy, SoftTarget
from adaptls.smoothing import schedule as schedule_module
from adaptls.smoothing._registry import _REGISTRY
from adaptls.smoothing.schedule import EpsilonSchedule
from adaptls.train import CONFIG_DIR, build, train

# The shared tiny dataset: a small Gaussian mixture and a small MLP (no data generation cost).
SMALL = {
    "data": "synthetic",
    "data.num_train": 600,
    "data.num_test": 200,
    "data.batch_size": 64,
    "model": "mlp",
    "model.hidden": "[32]",
}
SYNTHETIC = OmegaConf.load(Path(CONFIG_DIR) / "data" / "synthetic.yaml")
# One epoch of two batches (validation, test and the sanity check: two batches each).
EPOCHS = 1
ONE_EPOCH = [
    f"trainer.max_epochs={EPOCHS}",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "logger=none",
]
# The language-model setting of the fused linear path, tiny: a 300-token vocabulary.
TINY_LM = [
    "data=text_lm",
    "data.vocab_size=300",
    "data.context_length=16",
    "data.batch_size=8",
    "model=transformer_lm",
    "model.layers=1",
    "model.width=32",
    "model.heads=2",
]

# The translation setting of the fused linear path, tiny (greedy decoding of the test split).
TINY_MT = [
    "data=text_mt",
    "data.vocab_size=300",
    "data.batch_size=16",
    "model=transformer_mt",
    "model.layers=1",
    "model.width=32",
    "model.heads=2",
    "callbacks.translation.beam_size=1",
]

# Figures every run reports, on any data.
CORE = ("acc", "nll", "ece", "brier")


def tiny_data() -> list[str]:
    return [f"{key}={value}" for key, value in SMALL.items()]


def run(compose_train, output_dir: Path, *overrides: str) -> dict:
    """``python -m adaptls.train *overrides`` in this process; its metrics.json."""
    cfg = compose_train(*overrides, output_dir=output_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    return json.loads((output_dir / "metrics.json").read_text())


def check_run(metrics: dict, name: str) -> None:
    """What every run reports: the strategy's summary, finite validation (val/loss, the
    strategy's own loss, included) and test figures."""
    assert metrics["strategy"]["name"] == name
    for stage in ("val", "test"):
        figures = metrics[stage]
        # null: a figure undefined on this data (a frequency group without classes)
        bad = {k: v for k, v in figures.items() if v is not None and not math.isfinite(v)}
        assert not bad, f"smoothing={name}: non-finite {stage} figures {bad}"
        for key in CORE:
            assert figures[f"{stage}/{key}"] is not None, f"smoothing={name}: no {stage}/{key}"
    assert metrics["val"]["val/loss"] is not None
    amount = metrics["strategy"]["smoothing/applied_epsilon"]
    assert amount is None or 0.0 <= amount < 1.0


# ---------------------------------------------------------------- strategy x schedule
@pytest.mark.parametrize(("name", "schedule"), strategy_x_schedule())
def test_every_strategy_trains_with_every_schedule(compose_train, tmp_path, name, schedule):
    metrics = run(
        compose_train,
        tmp_path,
        f"smoothing={name}",
        f"smoothing.schedule={schedule}",
        *ONE_EPOCH,
        *tiny_data(),
    )
    check_run(metrics, name)
    summary, epoch = metrics["strategy"], metrics["evaluation"]["epoch"]
    assert epoch == EPOCHS - 1
    parsed = EpsilonSchedule.parse(schedule)
    if parsed.name == "constant":
        assert "schedule" not in summary
        return
    # the factor of the last epoch trained (evaluation does not move it)
    factor = parsed.factor(epoch, EPOCHS)
    assert summary["schedule"] == schedule
    assert summary["smoothing/schedule_factor"] == factor
    if factor == 0.0 and summary["smoothing/applied_epsilon"] is not None:
        assert summary["smoothing/applied_epsilon"] == 0.0  # every target was one-hot


@pytest.mark.parametrize("name", sorted({name for name, _ in strategy_x_schedule()}))
def test_every_strategy_takes_a_schedule_with_parameters(compose_train, tmp_path, name):
    """The mapping form composes for every strategy's yaml, and the run applies it."""
    metrics = run(
        compose_train,
        tmp_path,
        f"smoothing={name}",
        "smoothing.schedule={name: step, milestones: [0], gamma: 0.5}",
        *ONE_EPOCH,
        *tiny_data(),
    )
    check_run(metrics, name)
    assert metrics["strategy"]["schedule"] == {"name": "step", "milestones": [0], "gamma": 0.5}
    assert metrics["strategy"]["smoothing/schedule_factor"] == 0.5


# ---------------------------------------------------------------- strategy x mixer
def _mix_data(mixer: str) -> list[str]:
    """The shared tiny dataset if the mixer takes its features; else the default data (a
    mixer that needs series or images, CutMix: MNIST-1D)."""
    target = get_class(OmegaConf.load(Path(CONFIG_DIR) / "mix" / f"{mixer}.yaml")["_target_"])
    try:
        target().check_input_shape(SyntheticDataModule(dim=SYNTHETIC.dim).input_shape)
    except ValueError:
        return []
    return tiny_data()


@pytest.mark.parametrize(
    ("name", "mixer"),
    [
        pytest.param(name, mixer, marks=[] if _mix_data(mixer) else [pytest.mark.slow])
        for name, mixer in strategy_x_mixer()
    ],
)
def test_every_strategy_trains_with_every_mixer(compose_train, tmp_path, name, mixer):
    # Two epochs: the stateful strategies update once from mixed batches, then use it.
    overrides = [f"smoothing={name}", f"mix={mixer}", *ONE_EPOCH, "trainer.max_epochs=2"]
    metrics = run(compose_train, tmp_path, *overrides, *_mix_data(mixer))
    check_run(metrics, name)
    target = OmegaConf.load(Path(CONFIG_DIR) / "mix" / f"{mixer}.yaml")["_target_"]
    assert metrics["config"]["mix"]["_target_"] == target
    assert metrics["evaluation"]["epoch"] == 1


# ---------------------------------------------------------------- strategy x linear path
SUPPORTED, UNSUPPORTED = linear_path()
LINEAR_WARNING = "cannot use the fused linear loss"


def _logged_columns(output_dir: Path) -> set[str]:
    (path,) = (output_dir / "csv").glob("version_*/metrics.csv")
    with path.open() as f:
        return set(next(csv.reader(f)))


def _run_lm(compose_train, tmp_path, name, caplog) -> tuple[dict, set[str], str]:
    overrides = [f"smoothing={name}", *ONE_EPOCH, "logger=csv", *TINY_LM]
    with caplog.at_level(logging.WARNING, logger="adaptls.module"):
        metrics = run(compose_train, tmp_path, *overrides)
    check_run(metrics, name)
    for stage in ("val", "test"):
        assert math.isfinite(metrics[stage][f"{stage}/ppl"])
    return metrics, _logged_columns(tmp_path), caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("name", SUPPORTED)
def test_every_strategy_that_can_trains_through_the_fused_linear_loss(
    compose_train, tmp_path, name, caplog
):
    _, columns, log = _run_lm(compose_train, tmp_path, name, caplog)
    assert LINEAR_WARNING not in log
    # train/acc needs the N x V logits, which the fused path never forms
    assert "train/loss_epoch" in columns and "train/acc" not in columns


@pytest.mark.slow
@pytest.mark.parametrize("name", SUPPORTED)
def test_every_strategy_that_can_trains_translation_through_the_fused_linear_loss(
    compose_train, tmp_path, name, caplog
):
    overrides = [f"smoothing={name}", *ONE_EPOCH, "logger=csv", *TINY_MT]
    with caplog.at_level(logging.WARNING, logger="adaptls.module"):
        metrics = run(compose_train, tmp_path, *overrides)
    check_run(metrics, name)
    assert LINEAR_WARNING not in caplog.text
    for key in ("test/ppl", "test/bleu", "test/chrf"):
        assert math.isfinite(metrics["test"][key]), (key, metrics["test"][key])


@pytest.mark.slow
@pytest.mark.parametrize("name", UNSUPPORTED)
def test_a_strategy_that_cannot_gets_the_full_logits_with_a_warning(
    compose_train, tmp_path, name, caplog
):
    _, columns, log = _run_lm(compose_train, tmp_path, name, caplog)
    assert LINEAR_WARNING in log and "training computes the full logits" in log
    assert "train/acc" in columns  # the logits were formed


# ---------------------------------------------------------------- composer x stateful base
def _state(output_dir: Path, cfg_overrides: list[str], compose_train, path: str):
    """(the strategy's declared state as the run built it, as its last checkpoint holds it)
    for the strategy at ``path`` ("" the strategy, "base." its base)."""
    cfg = compose_train(*cfg_overrides, output_dir=output_dir / "fresh")
    _, module, _ = build(cfg)  # set up with the data's facts, untrained
    start = module.strategy.get_submodule(path.rstrip(".")) if path else module.strategy
    metrics = run(compose_train, output_dir / "run", *cfg_overrides)
    saved = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=False)
    return start.get_extra_state(), saved["state_dict"][f"strategy.{path}_extra_state"]


def _moved(start: dict, end: dict, names: set[str]) -> set[str]:
    return {n for n in names if not _same(start[n], end[n])}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN equal to NaN (a state not set yet, CALS' first constraint)."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize(("composer", "base"), composer_x_stateful_base())
def test_a_composed_base_keeps_its_state_moving(compose_train, tmp_path, composer, base):
    """One epoch of ``smoothing=<base>`` moves some of its declared state; as the base of
    ``smoothing=<composer>`` the same state moves."""
    names = own_state(base)
    common = [*ONE_EPOCH, *tiny_data()]
    alone = _moved(
        *_state(tmp_path / "alone", [f"smoothing={base}", *common], compose_train, ""), names
    )
    assert alone, f"one epoch of smoothing={base} moves none of {sorted(names)}: nothing to compare"
    composed_overrides = [f"smoothing={composer}", f"smoothing.base={base}", *common]
    composed = _moved(
        *_state(tmp_path / "composed", composed_overrides, compose_train, "base."), names
    )
    assert composed == alone, (
        f"smoothing={composer} smoothing.base={base}: the base's {sorted(alone - composed)} "
        "did not move as they do alone"
    )


# ---------------------------------------------------------------- the generator itself
def test_a_registered_strategy_schedule_and_mixer_join_every_axis(monkeypatch, tmp_path):
    """Registering is all it takes: no list in the tests names what is generated."""

    class ToyCombination(SmoothingStrategy):  # registered on definition, removed below
        name = "toy_combination"

        def setup(self, num_classes, class_counts=None):
            super().setup(num_classes, class_counts)
            self.add_state("seen", torch.zeros(num_classes), reduce="sum")

        def smoothing(self, logits, targets, indices=None):
            return SoftTarget(0.1)

    try:
        monkeypatch.setattr(schedule_module, "SCHEDULES", (*schedule_module.SCHEDULES, "toy"))
        conf = tmp_path / "conf"
        (conf / "mix").mkdir(parents=True)
        for option in (Path(CONFIG_DIR) / "mix").glob("*.yaml"):
            (conf / "mix" / option.name).write_text(option.read_text())
        (conf / "mix" / "toy_mix.yaml").write_text("_target_: adaptls.mix.MixUp\nalpha: 0.4\n")

        assert ("toy_combination", "toy") in strategy_x_schedule()
        assert ("uniform", "toy") in strategy_x_schedule()
        assert "toy_mix" in mixers(conf)
        assert ("toy_combination", "toy_mix") in strategy_x_mixer(conf)
        # a strategy opts in to the fused linear path; until then it gets the warning's case
        assert "toy_combination" in linear_path()[1]
        assert own_state("toy_combination") == {"seen"}
        assert ("mdca", "toy_combination") in composer_x_stateful_base()
    finally:
        _REGISTRY.pop("toy_combination")
    assert ("toy_combination", "toy") not in strategy_x_schedule()
