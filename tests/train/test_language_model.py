"""Language modelling through the Lightning module: the fused head in training, token-level
metrics (perplexity included) and temperature scaling over token logits."""

from __future__ import annotations

import json
import logging
import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassCalibrationError

from adaptls.calibration import fit_temperature
from adaptls.callbacks import TemperatureScaling
from adaptls.data import TextLMDataModule
from adaptls.data.text_lm import IGNORE_INDEX
from adaptls.metrics import AdaptiveCalibrationError, CalibrationSuite
from adaptls.models import TransformerLM
from adaptls.module import SmoothingClassifier
from adaptls.smoothing import ClassFrequencySmoothing, FocalLoss, UniformSmoothing


@pytest.fixture(scope="module")
def datamodule(tiny_text, tmp_path_factory) -> TextLMDataModule:
    dm = tiny_text(
        vocab_size=300, context_length=16, batch_size=8, data_dir=tmp_path_factory.mktemp("d")
    )
    dm.setup()
    return dm


def make_module(dm: TextLMDataModule, strategy) -> SmoothingClassifier:
    torch.manual_seed(0)
    net = TransformerLM(dm.input_shape, dm.num_classes, layers=1, width=32, heads=2, dropout=0.0)
    return SmoothingClassifier(
        net,
        strategy,
        partial(torch.optim.AdamW, lr=3e-3),
        num_classes=dm.num_classes,
        class_counts=dm.class_counts,
        token_level=True,
    )


def make_trainer(**kwargs) -> pl.Trainer:
    options = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return pl.Trainer(accelerator="cpu", deterministic=True, **options)


@pytest.mark.parametrize(
    "strategy",
    [UniformSmoothing(epsilon=0.1), ClassFrequencySmoothing(epsilon_head=0.2)],
    ids=["uniform", "class_frequency"],
)
def test_training_never_forms_the_logits(datamodule, strategy, monkeypatch):
    module = make_module(datamodule, strategy)
    assert module.linear_head
    before = [p.detach().clone() for p in module.parameters()]

    def no_logits(*args, **kwargs):
        raise AssertionError("training computed the N x V logits")

    monkeypatch.setattr(module.net, "forward", no_logits)
    trainer = make_trainer(limit_train_batches=4, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    assert math.isfinite(float(trainer.callback_metrics["train/loss_epoch"]))
    assert "train/acc" not in trainer.callback_metrics  # it would need the logits
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_a_strategy_that_reads_logits_trains_on_them_with_a_warning(datamodule, caplog):
    with caplog.at_level(logging.WARNING, logger="adaptls.module"):
        module = make_module(datamodule, FocalLoss())
    assert not module.linear_head
    assert "FocalLoss cannot use the fused linear loss" in caplog.text
    make_trainer(limit_train_batches=2, limit_val_batches=0).fit(module, datamodule=datamodule)


def token_rows(module, loader):
    """(N, V) logits and (N,) targets of every counted position, by hand."""
    logits, targets = [], []
    with torch.no_grad():
        for x, y, _ in loader:
            z = module.net.eval()(x)
            keep = y != IGNORE_INDEX
            logits.append(z[keep].double())
            targets.append(y[keep])
    return torch.cat(logits), torch.cat(targets)


def test_token_metrics_and_perplexity_match_a_hand_computation(datamodule):
    module = make_module(datamodule, UniformSmoothing(epsilon=0.1))
    trainer = make_trainer(limit_train_batches=6, callbacks=[TemperatureScaling()])
    trainer.fit(module, datamodule=datamodule)
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    z, y = token_rows(module, datamodule.test_dataloader())
    assert len(y) == int((datamodule.test_dataset.tensors[1] != IGNORE_INDEX).sum())
    nll = F.cross_entropy(z, y)  # unsmoothed, over the counted tokens only
    p = z.softmax(-1)
    assert test["test/nll"] == pytest.approx(float(nll), rel=1e-5)
    assert test["test/ppl"] == pytest.approx(math.exp(float(nll)), rel=1e-5)
    assert test["test/acc"] == pytest.approx(float((z.argmax(-1) == y).double().mean()), abs=1e-7)
    brier = ((p - F.one_hot(y, p.shape[1])) ** 2).sum(-1).mean()
    assert test["test/brier"] == pytest.approx(float(brier), rel=1e-5)
    ece = MulticlassCalibrationError(num_classes=p.shape[1], n_bins=15, norm="l1")(p.float(), y)
    assert test["test/ece"] == pytest.approx(float(ece), abs=1e-5)
    adaece = AdaptiveCalibrationError(num_classes=p.shape[1], n_bins=15)(z, y)
    assert test["test/adaece"] == pytest.approx(float(adaece), abs=1e-6)
    assert "val/ppl" in val and val["val/ppl"] == pytest.approx(math.exp(val["val/nll"]))

    # Temperature scaling on the token logits of the validate run, without keeping them.
    z_val, y_val = token_rows(module, datamodule.val_dataloader())
    assert test["test/ts/temperature"] == pytest.approx(fit_temperature(z_val, y_val), rel=2e-3)
    assert test["test/ts/acc"] == test["test/acc"]
    t = test["test/ts/temperature"]
    ts_nll = float(F.cross_entropy(z / t, y))
    assert test["test/ts/nll"] == pytest.approx(ts_nll, rel=1e-5)
    assert test["test/ts/ppl"] == pytest.approx(math.exp(ts_nll), rel=1e-5)


def test_token_metric_state_does_not_grow_with_the_vocabulary_times_the_tokens():
    """At V = 32000 every state is O(V * bins) or O(tokens), never O(tokens * V)."""
    v, n_bins = 32000, 15
    suite = CalibrationSuite(v, n_bins=n_bins)
    for _ in range(3):
        logits = torch.randn(2, 64, v)
        targets = torch.randint(v, (2, 64))
        targets[:, -5:] = IGNORE_INDEX
        suite.update(logits, targets)
    tokens = 3 * 2 * 59
    sizes = {name: sum(t.numel() for t in (value if isinstance(value, list) else [value]))
             for name, value in suite.metric_state.items()}  # fmt: skip
    assert sizes["classwise_gaps"] == v * n_bins and sizes["class_table"] == v * 3
    assert sizes["confidences"] == sizes["correct"] == tokens
    assert sum(sizes.values()) < v * (n_bins + 3) + 2 * tokens + 100
    assert math.isfinite(float(suite.compute()["cw_ece"]))


def test_mixing_token_ids_is_refused(datamodule):
    from adaptls.mix import MixUp

    net = TransformerLM(datamodule.input_shape, datamodule.num_classes, layers=1, width=16)
    with pytest.raises(ValueError, match="token ids, which do not mix"):
        SmoothingClassifier(
            net,
            UniformSmoothing(),
            partial(torch.optim.AdamW),
            num_classes=datamodule.num_classes,
            mix=MixUp(),
        )


# ---------------------------------------------------------------------- end to end
# One epoch of 20 steps (enough to beat a uniform guess), evaluation on 2 batches.
LM_TINY = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=20",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "data=text_lm",
    "model=transformer_lm",
    "data.vocab_size=300",
    "data.context_length=16",
    "model.layers=1",
    "model.width=32",
    "model.heads=2",
    "optimizer.lr=0.003",
]


def _check_lm_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    for name in ("test/ppl", "test/nll", "test/acc", "test/ece", "test/adaece", "test/brier"):
        assert math.isfinite(test[name]), name
    assert test["test/ppl"] == pytest.approx(math.exp(test["test/nll"]), rel=1e-6)
    assert test["test/ppl"] < 300  # better than a uniform guess over the vocabulary
    assert "test/ts/temperature" in test and "test/ts/ppl" in test
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("smoothing", ["uniform", "class_frequency"])
def test_the_cli_trains_a_language_model_with_the_default_callbacks(run_cli, tmp_path, smoothing):
    run_dir = tmp_path / "run"
    result = run_cli(f"smoothing={smoothing}", f"hydra.run.dir={run_dir}", *LM_TINY,
                     cwd=tmp_path)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Epoch 0" in output  # the progress bar was on
    metrics = _check_lm_metrics(run_dir)
    # The closing table shows the perplexity and the token-frequency groups.
    header = "| split | acc | ece | adaece | nll | ppl | brier | acc_many | acc_medium | acc_few |"
    assert header in result.stdout
    assert f"{metrics['test']['test/ppl']:.4f}" in result.stdout
    assert metrics["config"]["data"]["corpus"] == "pydoc"
    assert (run_dir / "plots" / "test_reliability.png").is_file()


@pytest.mark.slow
@pytest.mark.ddp
def test_a_language_model_trains_under_ddp_on_cpu(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("trainer=ddp_cpu", "smoothing=uniform", f"hydra.run.dir={run_dir}",
                     *LM_TINY, cwd=tmp_path)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Starting with 2 processes" in output
    assert _check_lm_metrics(run_dir)["config"]["trainer"]["devices"] == 2
