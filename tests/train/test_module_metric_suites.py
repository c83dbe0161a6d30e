"""SmoothingClassifier's metrics are child modules: they follow the module's device and
dtype, and only the training epoch's running sums are checkpointed."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.utilities.model_summary import ModelSummary
from torch import nn

from adaptls.metrics import CalibrationSuite
from adaptls.models.cnn1d import CNN1D
from adaptls.module import SmoothingClassifier
from adaptls.smoothing import UniformSmoothing


def _module() -> SmoothingClassifier:
    return SmoothingClassifier(
        CNN1D((1, 40), 10), UniformSmoothing(0.1), torch.optim.Adam, num_classes=10
    )


def test_the_state_dict_holds_the_model_the_strategy_and_the_training_epoch_sums():
    module = _module()
    assert ModelSummary(module, max_depth=1).layer_names[:2] == ["net", "strategy"]
    sums = {k for k in module.state_dict() if not k.startswith(("net.", "strategy."))}
    assert sums == {
        "train_loss_epoch.mean_value",
        "train_loss_epoch.weight",
        "train_acc.mean_value",
        "train_acc.weight",
    }


@pytest.mark.parametrize(
    "move",
    [
        lambda m: m.to(torch.float64),
        lambda m: m.double(),
        lambda m: m.to("cpu"),
        lambda m: m.to(torch.float64).float(),
    ],
    ids=["to-float64", "double", "to-cpu", "float64-then-float"],
)
def test_the_suites_follow_the_module_as_a_child_metric_would(move):
    module = _module()
    holder = nn.Module()
    holder.suite = CalibrationSuite(10)
    move(module)
    move(holder)
    for suite in (module.val_metrics, module.test_metrics):
        assert suite.device == holder.suite.device
        for name in ("bin_table", "class_table", "classwise_gaps", "nll_total"):
            assert getattr(suite, name).dtype == getattr(holder.suite, name).dtype
            assert getattr(suite, name).device == getattr(holder.suite, name).device


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_suites_move_to_the_gpu_with_the_module():
    module = _module().cuda()
    logits, targets = torch.randn(8, 10, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    module.val_metrics.update(logits, targets)
    assert module.val_metrics.bin_table.is_cuda and module.test_metrics.device.type == "cuda"
    assert torch.isfinite(module.val_metrics.compute()["ece"])
    assert module.train_loss_epoch.mean_value.is_cuda


@pytest.mark.parametrize("sums", [{"loss": 6.0, "batches": 3, "correct": 2.0, "rows": 4}, None])
def test_a_checkpoint_of_an_earlier_version_loads_with_its_epoch_sums(sums):
    """Earlier versions kept the epoch's running sums under their own checkpoint key (None:
    before that, none kept): they become the metric states, and the module loads."""
    written = _module()
    state = {k: v for k, v in written.state_dict().items() if k.startswith(("net.", "strategy."))}
    checkpoint = {"state_dict": state}
    if sums is not None:
        checkpoint["adaptls_train_epoch_sums"] = {
            "loss": torch.tensor(sums["loss"]),
            "batches": sums["batches"],
            "correct": torch.tensor(sums["correct"]),
            "rows": sums["rows"],
        }
    module = _module()
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])  # strict, as Lightning loads
    assert "adaptls_train_epoch_sums" not in checkpoint
    if sums is None:
        assert not module.train_loss_epoch.weight and not module.train_acc.weight
    else:
        loss, acc = module.train_loss_epoch, module.train_acc
        assert (float(loss.mean_value), float(loss.weight)) == (6.0, 3.0)
        assert (float(acc.mean_value), float(acc.weight)) == (2.0, 4.0)
        acc.update(torch.tensor([1.0, 1.0]))  # the epoch goes on from there
        assert float(acc.compute()) == pytest.approx(4 / 6)
