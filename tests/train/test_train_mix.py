"""``python -m adaptls.train mix=<mixup|cutmix>``: a short run on series, a mixer refused by
flat features, and the mixed batch reaching the strategy's hooks (every strategy x every
mixer: test_combinations.py; mixers x token ids: test_combinations_refused.py)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from adaptls.mix import MixUp
from adaptls.module import SmoothingClassifier
from adaptls.run.config import ConfigError
from adaptls.smoothing import UniformSmoothing
from adaptls.smoothing.driver import StrategyDriver
from adaptls.train import train

# Two epochs of two batches: the stateful strategies update once and then use their state.
SHORT = [
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "logger=none",
]


def run(compose_train, output_dir: Path, *overrides: str) -> dict:
    cfg = compose_train(*overrides, output_dir=output_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    return json.loads((output_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_cutmix_trains_on_series(compose_train, tmp_path):
    """MNIST-1D series (B, 1, 40) and the default CNN (images: tests/mix/test_mix.py)."""
    overrides = ("mix=cutmix", "smoothing=online", *SHORT)
    metrics = run(compose_train, tmp_path, *overrides)
    assert math.isfinite(metrics["test"]["test/nll"])


def test_cutmix_on_flat_features_fails_before_training(compose_train, tmp_path):
    cfg = compose_train("mix=cutmix", *SHORT, "data=synthetic", "model=mlp", output_dir=tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"mix=cutmix cannot mix data=synthetic \(inputs \(20,\)\): CutMix needs images",
    ):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_training_step_scores_the_mixed_batch_and_weights_the_accuracy():
    """The module mixes the batch, scores lam t(y_a) + (1 - lam) t(y_b) and logs the
    lam-weighted accuracy; the hooks see the partner's sample indices."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 4))
    strategy = UniformSmoothing(epsilon=0.1)
    module = SmoothingClassifier(
        net, strategy, lambda p: torch.optim.SGD(p, lr=0.1), num_classes=4, mix=MixUp(alpha=1.0)
    )
    x, y, idx = torch.randn(6, 2, 4), torch.tensor([0, 1, 2, 3, 0, 1]), torch.arange(6)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    module.log_dict = lambda values, **kw: logged.update(values)
    # the epoch's only step: train/acc (a mean over the epoch) is logged there
    stand_in = {
        "num_training_batches": 1,
        "global_step": 0,
        "loggers": [],
        "progress_bar_callback": None,
    }
    module._trainer = type("T", (), stand_in)()
    torch.manual_seed(3)
    loss = module.training_step((x, y, idx), 0)
    torch.manual_seed(3)
    mixed = MixUp(alpha=1.0)(x, y)
    logits = net(mixed.x)
    assert 0 < mixed.lam < 1
    expected = StrategyDriver(strategy).mixed_loss(logits, mixed.y_a, mixed.y_b, mixed.lam)
    torch.testing.assert_close(loss, expected)
    pred = logits.argmax(-1)
    acc = mixed.lam * (pred == mixed.y_a).float().mean()
    acc += (1 - mixed.lam) * (pred == mixed.y_b).float().mean()
    # logged as the epoch's MeanMetric, which Lightning computes (and syncs) at the epoch end
    torch.testing.assert_close(logged["train/acc"].compute(), acc)
