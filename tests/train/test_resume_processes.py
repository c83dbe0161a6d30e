"""A checkpoint resumes only on as many processes as wrote it (each rank takes back its own
RNG states and sums): another number is refused at build, in one line."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from adaptls.run.config import ConfigError
from adaptls.train import build, train


@pytest.mark.slow
def test_resuming_on_another_number_of_processes_is_refused(compose_train, tmp_path, small, tiny):
    run = tmp_path / "run"
    cfg = compose_train(*small, *tiny, "logger=none", output_dir=run)
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["adaptls_world_size"] == 1

    on_two = compose_train(
        *small, *tiny, "trainer=ddp_cpu", "ckpt_path=last", "logger=none", output_dir=run
    )
    with pytest.raises(ConfigError) as error:
        build(on_two)
    assert str(error.value) == (
        f"ckpt_path=last: {last} was written by 1 process(es) and this run has 2 "
        "(trainer=ddp_cpu); each resumes its own RNG states and sums: resume with 1 "
        "process(es) (trainer.devices x trainer.num_nodes)"
    )
    build(compose_train(*small, *tiny, "ckpt_path=last", "logger=none", output_dir=run))
