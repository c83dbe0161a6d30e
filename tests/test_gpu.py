"""CUDA checks, skipped without a GPU: the fused loss and a short GPU training run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from adaptls.smoothing import OnlineSmoothing, soft_target_cross_entropy
from adaptls.smoothing.driver import StrategyDriver

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_loss_on_cuda_matches_torch(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    logits = torch.randn(4096, 1000, device="cuda", dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 1000, (4096,), device="cuda")
    targets[::7] = -100
    ours = soft_target_cross_entropy(logits, targets, 0.1)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits.float(), targets, label_smoothing=0.1)
    (g_ref,) = torch.autograd.grad(ref, logits)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(ours.float(), ref, atol=tol, rtol=tol)
    torch.testing.assert_close(g_ours.float(), g_ref.float(), atol=tol, rtol=tol)


def test_online_smoothing_state_lives_on_the_gpu() -> None:
    s = OnlineSmoothing().cuda()
    s.setup(num_classes=10)
    s.train()
    logits = torch.randn(64, 10, device="cuda")
    targets = logits.argmax(-1)
    s.observe(logits, targets)
    StrategyDriver(s).on_epoch_end()
    assert s.S.is_cuda and torch.allclose(s.S.sum(-1), torch.ones(10, device="cuda"))
    assert torch.isfinite(s(logits, targets))


@pytest.mark.slow
def test_short_gpu_training_run(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "adaptls.train",
        "trainer=gpu",
        "trainer.max_epochs=3",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["config"]["trainer"]["accelerator"] == "gpu"
    assert 0.0 <= record["test"]["test/acc"] <= 1.0
