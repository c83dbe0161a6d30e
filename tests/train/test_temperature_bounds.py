"""Temperature scaling's search range is a config key: checked when the run is built, and
when T lands on a bound the warning names an override that, composed by Hydra, finds it."""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from adaptls.calibration import fit_temperature
from adaptls.module import SmoothingClassifier
from adaptls.run.config import instantiate_group
from adaptls.smoothing import NoSmoothing

ADVICE = re.compile(r"callbacks\.temperature_scaling\.bounds=\[[^\]]*\]")
K = 10


class Scaled(nn.Module):
    """A 'model' whose inputs are calibrated logits: it multiplies them by ``scale``, so the
    temperature that undoes it is about ``scale``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def calibrated(seed: int, n: int = 3000) -> TensorDataset:
    """Logits with labels drawn from their own softmax: their best temperature is about 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, K, generator=generator)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
    return TensorDataset(logits, labels)


def scaled_run(callback: pl.Callback, scale: float) -> dict[str, float]:
    """Validate then test (as ``adaptls.train`` does) with ``callback``; the test metrics."""
    module = SmoothingClassifier(
        Scaled(scale), NoSmoothing(), partial(torch.optim.SGD, lr=0.1), num_classes=K
    )
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[callback], enable_model_summary=False
    )
    trainer.validate(module, DataLoader(calibrated(0), batch_size=1000), verbose=False)
    return trainer.test(module, DataLoader(calibrated(1), batch_size=1000), verbose=False)[0]


def composed_callback(compose_train, tmp_path: Path, *overrides: str) -> pl.Callback:
    cfg = compose_train(*overrides, output_dir=tmp_path)
    return instantiate_group(cfg, "callbacks.temperature_scaling")


@pytest.mark.parametrize(
    ("scale", "bound", "advised"),
    [(300.0, "upper", "[0.01,10000]"), (1 / 300, "lower", "[0.0001,100]")],
)
def test_the_advised_override_finds_a_temperature_past_the_default_bound(
    compose_train, tmp_path, caplog, scale, bound, advised
):
    caplog.set_level(logging.WARNING, logger="adaptls.callbacks.temperature_scaling")
    default = composed_callback(compose_train, tmp_path)
    assert default.bounds == (0.01, 100.0)
    test = scaled_run(default, scale)
    assert test["test/ts/temperature"] == pytest.approx(100.0 if bound == "upper" else 0.01)
    assert f"at the {bound} bound of the temperature search" in caplog.text
    (override,) = ADVICE.findall(caplog.text)
    assert override == f"callbacks.temperature_scaling.bounds={advised}"

    caplog.clear()
    widened = composed_callback(compose_train, tmp_path, override)
    test = scaled_run(widened, scale)
    assert "bound of the temperature search" not in caplog.text
    val_logits, val_labels = calibrated(0).tensors
    exact = fit_temperature(scale * val_logits, val_labels, bounds=widened.bounds)
    assert test["test/ts/temperature"] == pytest.approx(exact, rel=2e-3)
    assert 0.8 * scale < test["test/ts/temperature"] < 1.25 * scale
    assert test["test/ts/nll"] < test["test/nll"]
