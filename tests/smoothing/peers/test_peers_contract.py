"""What every calibration loss shares: registry, reductions, ignored rows, no host sync,
low precision, the schedule, hyperparameters, figures, soft targets, errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import (
    MDCA,
    STRATEGIES,
    ACLSmoothing,
    AdaptiveFocalLoss,
    DualFocalLoss,
    FocalLoss,
    MarginSmoothing,
    soft_targets,
)
from adaptls.smoothing.base import Criterion, SmoothingStrategy
from adaptls.smoothing.driver import StrategyDriver

K = 6
PEERS = {
    "focal": (FocalLoss, {"gamma": 2.0}),
    "flsd": (AdaptiveFocalLoss, {"gamma": 2.0, "gamma_low": 4.0, "gamma_mid": 2.5}),
    "mbls": (MarginSmoothing, {"margin": 3.0, "alpha": 0.5}),
    "acls": (ACLSmoothing, {"alpha": 0.2, "pos_lambda": 0.5, "neg_lambda": 0.3, "margin": 3.0}),
    "dual_focal": (DualFocalLoss, {"gamma": 3.0}),
    "mdca": (MDCA, {"beta": 2.0, "base": {"name": "focal", "gamma": 1.0}}),
}


def make(name, **extra):
    cls, hparams = PEERS[name]
    strategy = cls(**{**hparams, **extra})
    StrategyDriver(strategy).setup(num_classes=K)
    return strategy


def batch(seed=0, shape=(4, 5), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, K, generator=g) * 4).to(dtype)
    targets = torch.randint(0, K, shape, generator=g)
    targets[0, :2] = -100
    return logits, targets


def test_registered_under_their_names():
    for name, (cls, _) in PEERS.items():
        assert STRATEGIES[name] is cls and cls.name == name


@pytest.mark.parametrize("name", PEERS)
def test_reductions_agree_over_leading_dimensions(name):
    strategy = make(name)
    logits, targets = batch()
    rows = strategy(logits, targets, reduction="none")
    counted = targets != -100
    assert rows.shape == targets.shape and (rows[~counted] == 0).all()
    assert (rows[counted] > 0).all()
    torch.testing.assert_close(strategy(logits, targets, reduction="sum"), rows.sum())
    torch.testing.assert_close(strategy(logits, targets), rows.sum() / counted.sum())


@pytest.mark.parametrize("name", PEERS)
def test_every_row_ignored_gives_zero_without_nan(name):
    logits = torch.randn(3, K, requires_grad=True)
    loss = make(name)(logits, torch.full((3,), -100))
    loss.backward()
    assert loss == 0 and (logits.grad == 0).all()


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_needs_no_host_sync(name, reduction):
    """On meta tensors any .item(), int() or bool() of a tensor fails: the loss and its
    gradient are built without one. (MDCA's default base, the fused cross-entropy, counts
    its rows on the host; its own term does not.)"""
    strategy = make(name)
    x = torch.empty(8, K, device="meta", requires_grad=True)
    y = torch.empty(8, dtype=torch.long, device="meta")
    loss = strategy.loss(x, y, None, reduction)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert grad.shape == x.shape


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_accumulate_in_float32(name, dtype):
    logits, targets = batch(dtype=dtype)
    x = logits.clone().requires_grad_()
    loss = make(name)(x, targets)
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == dtype
    expected = make(name)(logits.float(), targets)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", PEERS)
def test_a_schedule_at_zero_leaves_cross_entropy(name):
    """The epsilon schedule scales each loss's own strength (gamma, alpha, beta)."""
    base = {"base": None} if name == "mdca" else {}  # MDCA's own schedule scales beta only
    strategy = make(name, schedule="warmup", **base)
    StrategyDriver(strategy).set_epoch(0, max_epochs=20)  # warmup: s(0) = 0
    assert strategy.schedule_factor == 0.0
    assert strategy.summary()["schedule"] == "warmup"
    logits, targets = batch()
    torch.testing.assert_close(
        strategy(logits, targets), F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    )


@pytest.mark.parametrize("name", PEERS)
def test_hparams_rebuild_the_strategy_and_show_in_its_repr(name):
    strategy = make(name)
    assert type(strategy)(**strategy.hparams()).hparams() == strategy.hparams()
    assert strategy.hparams() == PEERS[name][1]
    shown = {"beta": 2.0} if name == "mdca" else strategy.hparams()
    for key, value in shown.items():
        assert f"{key}={value!r}" in repr(strategy)


@pytest.mark.parametrize("name", PEERS)
def test_summary_is_json_and_figures_are_named(name):
    strategy = make(name)
    strategy(*batch())
    summary = json.loads(json.dumps(strategy.summary()))
    assert summary["name"] == name and summary["hparams"] == strategy.hparams()
    for key, value in strategy.log_values().items():
        assert key.startswith("smoothing/")
        assert isinstance(value, float) or (torch.is_tensor(value) and value.dim() == 0)
        assert isinstance(summary[key], float)


@pytest.mark.parametrize("name", PEERS)
def test_figures_come_from_training_batches_only(name):
    strategy = make(name)
    strategy(*batch(seed=1))
    before = {k: torch.as_tensor(v).clone() for k, v in strategy.log_values().items()}
    strategy.eval()
    strategy(*batch(seed=2))  # a validation loss
    after = strategy.log_values()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], torch.as_tensor(after[key])), key


@pytest.mark.parametrize("name", PEERS)
def test_a_criterion_has_no_soft_target_to_fake(name):
    """The calibration losses are criteria: no ``smoothing()``, no ``soft_targets()``
    (before the split, MbLS, ACLS and CALS returned a placeholder one-hot target)."""
    strategy = make(name)
    assert isinstance(strategy, Criterion) and not isinstance(strategy, SmoothingStrategy)
    assert not hasattr(strategy, "smoothing")
    with pytest.raises(TypeError, match=rf"smoothing={name}\) has no soft target"):
        soft_targets(strategy, *batch())


@pytest.mark.parametrize("name", PEERS)
def test_use_before_setup_names_the_missing_fact(name):
    cls, hparams = PEERS[name]
    with pytest.raises(RuntimeError, match=r"needs num_classes: call setup\(num_classes=\.\.\.\)"):
        cls(**hparams)(*batch())


@pytest.mark.parametrize("name", PEERS)
def test_bad_inputs_are_named(name):
    with pytest.raises(ValueError, match=r"target 6 .*allowed are 0\.\.5"):
        make(name)(torch.zeros(3, K), torch.tensor([0, K, 1]))
    with pytest.raises(ValueError, match=r"7 classes.*num_classes=6"):
        make(name)(torch.zeros(3, K + 1), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'mean', 'sum', 'none'.*'batchmean'"):
        make(name)(*batch(), reduction="batchmean")


@pytest.mark.parametrize(
    ("name", "key"),
    [(name, key) for name, (_, hparams) in PEERS.items() for key in hparams if key != "base"],
)
@pytest.mark.parametrize("value", [-1.0, float("nan"), "1", True])
def test_bad_hyperparameters_fail_at_construction(name, key, value):
    cls, _ = PEERS[name]
    with pytest.raises(ValueError, match=rf"{key} must be a number >= 0, got"):
        cls(**{key: value})


@pytest.mark.parametrize("name", PEERS)
def test_state_dict_round_trip(name):
    strategy = make(name)
    fresh = make(name)
    fresh.load_state_dict(strategy.state_dict())
    logits, targets = batch(seed=5)
    torch.testing.assert_close(fresh(logits, targets), strategy(logits, targets), rtol=0, atol=0)
