"""Online smoothing under Lightning DDP (2 CPU processes) holds the same S on both ranks,
equal to a single process that sees the same global batches."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from resilience_support import inject, run_train

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

# With per-rank batch B the DDP global batch k is positions
# [2kB, 2(k+1)B) of the epoch's order (DistributedSampler deals positions round-robin),
# exactly the single process's batch k at batch size 2B. Gradients are means, so DDP's
# averaged gradient equals the single process's: the models, hence S, evolve identically.
COMMON = [
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=6",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.deterministic=true",
    "model.dropout=0.0",
    "smoothing=online",
    "logger=none",
    "scheduler=none",
]


def _state(run_dir: Path, rank: int) -> dict[str, torch.Tensor]:
    """The strategy's declared state on that rank at the end of fit."""
    return torch.load(run_dir / "state" / f"rank{rank}.pt", weights_only=True)["_extra_state"]


def test_online_S_is_identical_on_both_ranks_and_equals_single_process(tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_train(
        single,
        *COMMON,
        "data.batch_size=64",
        inject("dump", "DumpStrategyState", dirpath=single / "state"),
    )
    run_train(
        ddp,
        *COMMON,
        "trainer=ddp_cpu",
        "data.batch_size=32",
        inject("dump", "DumpStrategyState", dirpath=ddp / "state"),
    )

    reference = _state(single, 0)["S"]
    uniform = torch.full_like(reference, 1 / reference.shape[0])
    assert not torch.allclose(reference, uniform)  # the hooks ran: S moved
    for rank in (0, 1):
        torch.testing.assert_close(_state(ddp, rank)["S"], reference, atol=1e-6, rtol=0)
    assert sorted(p.name for p in ddp.glob("metrics.json")) == ["metrics.json"]


def test_feedback_epsilon_is_identical_on_both_ranks(tmp_path: Path) -> None:
    run_train(
        tmp_path,
        *COMMON,
        "trainer=ddp_cpu",
        "data.batch_size=32",
        "smoothing=feedback",
        "smoothing.per_class=true",
        inject("dump", "DumpStrategyState", dirpath=tmp_path / "state"),
    )
    eps = [_state(tmp_path, rank)["epsilon"] for rank in (0, 1)]
    assert torch.equal(eps[0], eps[1])
    assert not torch.allclose(eps[0], torch.full_like(eps[0], 0.1))  # the controller moved


def test_self_distill_stores_every_sample_once_across_two_ranks(tmp_path: Path) -> None:
    run_train(
        tmp_path,
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "trainer=ddp_cpu",
        "data.batch_size=100",
        "smoothing=self_distill",
        "logger=none",
        inject("dump", "DumpStrategyState", dirpath=tmp_path / "state"),
    )
    counts = [torch.load(tmp_path / "state" / f"counts_rank{r}_epoch0.pt") for r in (0, 1)]
    n = counts[0].numel()  # 3601 training samples: the sampler repeats one to even the ranks
    seen = counts[0] + counts[1]
    assert (seen >= 1).all()  # every sample, ...
    assert seen.sum() == 2 * ((n + 1) // 2) and (seen > 1).sum() == n % 2  # ... once but the pad
    assert counts[0].sum() == counts[1].sum()
    states = [_state(tmp_path, rank) for rank in (0, 1)]
    assert int(states[0]["stored"].sum()) == n
    assert torch.equal(states[0]["table"], states[1]["table"])


def test_epoch_means_cover_every_ranks_rows(tmp_path: Path) -> None:
    """train/loss_epoch, train/acc and val/loss under DDP are the means over both ranks'
    rows: those of the single process that sees the same global batches."""
    logged = {}
    for name, overrides in {
        "single": ["data.batch_size=64"],
        "ddp": ["trainer=ddp_cpu", "data.batch_size=32"],
    }.items():
        run_train(tmp_path / name, *COMMON, *overrides, "logger=csv")
        (path,) = (tmp_path / name).glob("csv/*/metrics.csv")
        rows = list(csv.DictReader(path.open()))
        logged[name] = {
            key: [float(r[key]) for r in rows if r.get(key)]
            for key in ("train/loss_epoch", "train/acc", "val/loss")
        }
    # per epoch; val/loss also for the final validation of the evaluated weights
    assert [len(v) for v in logged["single"].values()] == [2, 2, 3]
    for key, values in logged["single"].items():
        # the same rows and weights, summed in another order (float32)
        assert logged["ddp"][key] == pytest.approx(values, rel=1e-5), key
