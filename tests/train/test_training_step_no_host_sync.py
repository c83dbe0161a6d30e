"""The Lightning training step makes no host read of tensor values (on a GPU, each one is
a device sync that stalls the step).

A real run (the default callbacks, progress bar on, the default trainer) whose
``training_step`` runs under the ``no_host_reads`` guard of tests/conftest.py: the loss,
the strategy's ``observe`` and ``log_values``, the logging of ``train/...``. Only the
epoch's last step may read the device, once: there the non-finite-loss check and the
strategy's epoch update run (and a stateful strategy's reduction across ranks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from adaptls.smoothing import STRATEGIES
from adaptls.train import build

FAST = ["uniform", "online", "confidence"]


def guarded_fit(
    compose_train, small: list[str], no_host_reads, tmp_path: Path, *overrides: str
) -> list[int]:
    cfg = compose_train(
        *small,
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=1",
        "logger=none",
        *overrides,
        output_dir=tmp_path,
    )
    datamodule, module, trainer = build(cfg)
    step, guarded = module.training_step, []

    def training_step(batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:  # the epoch's one check
            return step(batch, batch_idx)
        with no_host_reads():
            loss = step(batch, batch_idx)
        guarded.append(batch_idx)
        return loss

    module.training_step = training_step
    trainer.fit(module, datamodule=datamodule)
    return guarded


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in STRATEGIES]
)
def test_training_steps_read_no_values(name, compose_train, small, no_host_reads, tmp_path):
    guarded = guarded_fit(compose_train, small, no_host_reads, tmp_path, f"smoothing={name}")
    assert guarded == [0, 1, 2] * 2


def test_the_guard_sees_the_training_step(
    compose_train, small, no_host_reads, host_read_error, tmp_path
):
    # a host read in a strategy hook fails the run: the guard is really in place
    def observe(self, logits, targets, indices=None):
        float(logits.sum())

    with pytest.MonkeyPatch.context() as m:
        m.setattr(STRATEGIES["uniform"], "observe", observe)
        with pytest.raises(host_read_error):
            guarded_fit(compose_train, small, no_host_reads, tmp_path, "smoothing=uniform")


@contextlib.contextmanager
def cuda_sync_errors() -> Iterator[None]:
    """Raise on any operation that synchronizes the host with the GPU."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", FAST)
def test_training_steps_on_cuda_do_not_synchronize(name, compose_train, small, tmp_path):
    guarded = guarded_fit(
        compose_train, small, cuda_sync_errors, tmp_path, "trainer=gpu", f"smoothing={name}"
    )
    assert guarded == [0, 1, 2] * 2
