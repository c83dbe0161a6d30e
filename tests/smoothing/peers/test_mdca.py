"""MDCA against a port of the authors' MDCA and ClassficationAndMDCA
(mdca-loss/MDCA-Calibration solvers/loss.py), and its composition with other strategies."""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from adaptls.run.config import instantiate_group
from adaptls.smoothing import MDCA, FocalLoss, OnlineSmoothing
from adaptls.smoothing.driver import StrategyDriver
from adaptls.train import CONFIG_DIR

CLASSES = [2, 10, 1000]


def reference_mdca(output, target):
    """The authors' MDCA: a loop over the classes."""
    output = torch.softmax(output, dim=1)
    loss = torch.tensor(0.0, dtype=output.dtype)
    _, classes = output.shape
    for c in range(classes):
        avg_count = (target == c).to(output.dtype).mean()
        avg_conf = torch.mean(output[:, c])
        loss += torch.abs(avg_conf - avg_count)
    return loss / classes


def reference_focal(x, y, gamma):
    logpt = F.log_softmax(x, dim=1).gather(1, y.view(-1, 1)).view(-1)
    return (-1 * (1 - logpt.exp()) ** gamma * logpt).mean()


def reference_label_smoothing(pred, target, alpha):
    """The authors' LabelSmoothingLoss: 1 - alpha on the target, alpha / (K - 1) elsewhere."""
    pred = pred.log_softmax(dim=-1)
    true_dist = torch.full_like(pred, alpha / (pred.shape[-1] - 1))
    true_dist.scatter_(1, target.unsqueeze(1), 1.0 - alpha)
    return torch.mean(torch.sum(-true_dist * pred, dim=-1))


def reference(x, y, *, kept, loss="NLL", beta=1.0, alpha=0.1, gamma=1.0):
    """ClassficationAndMDCA on the counted rows."""
    x, y = kept(x, y)
    cls = {
        "NLL": lambda: F.cross_entropy(x, y),
        "FL": lambda: reference_focal(x, y, gamma),
        "LS": lambda: reference_label_smoothing(x, y, alpha),
    }[loss]()
    return cls + beta * reference_mdca(x, y)


def built(k, **hparams):
    strategy = MDCA(**hparams)
    StrategyDriver(strategy).setup(num_classes=k)
    return strategy


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("beta", [1.0, 5.0])
def test_nll_mdca_matches_the_reference(batch, check_against, kept, k, beta):
    x, y = batch(k, scale=2.0)
    ref = lambda a, b: reference(a, b, kept=kept, beta=beta)  # noqa: E731
    check_against(built(k, beta=beta), ref, x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", CLASSES)
def test_fl_mdca_matches_the_reference(batch, check_against, kept, k):
    x, y = batch(k, scale=2.0, seed=1)
    strategy = built(k, base={"name": "focal", "gamma": 1.0})
    ref = lambda a, b: reference(a, b, kept=kept, loss="FL", gamma=1.0)  # noqa: E731
    check_against(strategy, ref, x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", CLASSES)
def test_ls_mdca_matches_the_reference_with_its_epsilon_convention(batch, check_against, kept, k):
    """The authors' a/(K-1) smoothing is uniform with epsilon a K / (K - 1)."""
    x, y = batch(k, scale=2.0, seed=2)
    strategy = built(k, base={"name": "uniform", "epsilon": 0.1 * k / (k - 1)})
    ref = lambda a, b: reference(a, b, kept=kept, loss="LS", alpha=0.1)  # noqa: E731
    check_against(strategy, ref, x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", CLASSES)
def test_float32_and_extreme_logits(batch, check_against, kept, k):
    ref = lambda a, b: reference(a, b, kept=kept)  # noqa: E731
    x, y = batch(k, dtype=torch.float32, seed=3)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-6)
    x, y = batch(k, scale=1e4, dtype=torch.float32, seed=4)
    check_against(built(k), ref, x, y, rtol=1e-5, atol=1e-5)


def test_reductions_share_the_batch_term(batch):
    x, y = batch(10)
    strategy = built(10, beta=2.0, base="focal")
    counted = y != -100
    rows = strategy(x, y, reduction="none")
    assert (rows[~counted] == 0).all()
    torch.testing.assert_close(strategy(x, y, reduction="sum"), rows.sum())
    torch.testing.assert_close(strategy(x, y), rows.sum() / counted.sum())
    term = 2.0 * strategy.log_values()["smoothing/mdca"]
    torch.testing.assert_close(rows[counted], strategy.base(x, y, reduction="none")[counted] + term)


def test_hooks_and_state_reach_the_base(batch):
    strategy = built(4, base="online")
    assert isinstance(strategy.base, OnlineSmoothing) and strategy.base.num_classes == 4
    x, y = batch(4, n=64)
    driver = StrategyDriver(strategy)
    driver.set_epoch(3, max_epochs=5)
    driver.observe(x * 3, y)
    driver.on_epoch_end()
    assert strategy.base.epoch == 3
    assert any(key.startswith("base.") for key in strategy.state_dict())  # the base's state
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    fresh = built(4, base="online")
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x, y), strategy(x, y), rtol=0, atol=0)


def test_hparams_rebuild_and_summary_is_json(batch):
    strategy = built(10, beta=3.0, base={"name": "focal", "gamma": 2.0})
    assert strategy.hparams() == {"beta": 3.0, "base": {"name": "focal", "gamma": 2.0}}
    assert MDCA(**strategy.hparams()).hparams() == strategy.hparams()
    assert built(10).hparams() == {"beta": 1.0, "base": None}
    strategy(*batch(10))
    summary = json.loads(json.dumps(strategy.summary()))
    assert summary["base"]["name"] == "focal" and summary["smoothing/gamma"] == 2.0
    assert isinstance(summary["smoothing/mdca"], float)


@pytest.mark.parametrize(
    ("base", "error", "message"),
    [
        ("mdca", ValueError, "must not be mdca"),
        ("nope", ValueError, r"base must be one of .*'focal'.*; got 'nope'"),
        ({"gamma": 2.0}, TypeError, "mapping with a 'name' key"),
        (FocalLoss(ignore_index=0), ValueError, r"ignore_index=0 but mdca has ignore_index=-100"),
    ],
)
def test_bad_bases_are_named(base, error, message):
    with pytest.raises(error, match=message):
        MDCA(base=base)


def test_a_built_base_takes_the_ignore_index():
    assert MDCA(base="focal", ignore_index=0).base.ignore_index == 0


@pytest.mark.parametrize(
    ("overrides", "base"),
    [
        ([], "none"),
        (["smoothing.base=focal"], "focal"),
        (["smoothing.base={name: focal, gamma: 1.0}"], "focal"),
        (["+smoothing@smoothing.base=focal", "smoothing.base.gamma=1.0"], "focal"),
    ],
)
def test_hydra_composes_a_base(overrides, base):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["smoothing=mdca", *overrides])
    strategy = instantiate_group(cfg, "smoothing")
    assert isinstance(strategy, MDCA) and strategy.base.name == base
    if "gamma" in str(overrides):
        assert strategy.base.gamma == 1.0
