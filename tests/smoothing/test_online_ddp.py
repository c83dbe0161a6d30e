"""OnlineSmoothing across two CPU processes (gloo): every rank ends the epoch with the S a
single process computes from the union of both ranks' batches, DDP buffer broadcasts
included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adaptls.smoothing import OnlineSmoothing
from adaptls.smoothing.driver import StrategyDriver

K = 5
WORLD = 2


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Six batches; class 4 is never predicted right, class 3 only in rank 1's batches."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(6):
        logits = torch.randn(16, K, generator=g) * 3
        logits[:, 4] -= 20.0  # never the arg-max
        if i % WORLD == 0:
            logits[:, 3] -= 20.0  # rank 0 never sees a correct class-3 sample
        targets = logits.argmax(-1)
        wrong = torch.rand(16, generator=g) < 0.3
        targets[wrong] = torch.randint(0, K, (int(wrong.sum()),), generator=g)
        targets[::7] = -100
        out.append((logits, targets))
    return out


def worker(rank: int, init_file: str, out_dir: str, broadcast: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        s = OnlineSmoothing(alpha=0.5)
        s.setup(num_classes=K)
        for i, (logits, targets) in enumerate(batches()):
            if i % WORLD != rank:
                continue
            if broadcast:  # what DDP(broadcast_buffers=True) does before each forward
                for _, buffer in s.named_buffers():
                    dist.broadcast(buffer, src=0)
            s.observe(logits, targets)
        StrategyDriver(s).on_epoch_end()
        torch.save(s.S, Path(out_dir) / f"S{rank}.pt")
    finally:
        dist.destroy_process_group()


def single_process_s() -> torch.Tensor:
    s = OnlineSmoothing(alpha=0.5)
    s.setup(num_classes=K)
    for logits, targets in batches():
        s.observe(logits, targets)
    StrategyDriver(s).on_epoch_end()
    return s.S


@pytest.mark.ddp
@pytest.mark.parametrize("broadcast", [False, True])
def test_ranks_agree_with_one_process_on_all_batches(tmp_path, monkeypatch, broadcast):
    # spawned processes import this module by its name under the repository root
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    mp.spawn(
        worker, args=(str(tmp_path / "init"), str(tmp_path), broadcast), nprocs=WORLD, join=True
    )
    expected = single_process_s()
    assert not torch.allclose(expected[3], torch.full((K,), 1.0 / K))  # learned from rank 1
    torch.testing.assert_close(expected[4], torch.full((K,), 1.0 / K))  # nobody got it right
    for rank in range(WORLD):
        s = torch.load(tmp_path / f"S{rank}.pt")
        torch.testing.assert_close(s, expected, rtol=0, atol=1e-6)
