"""The declared-state API of SmoothingStrategy: declared once, checkpointed, following the
device but never the dtype, no DDP buffers, reduced across ranks once per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adaptls.smoothing import STRATEGIES, SmoothingStrategy, SoftTarget
from adaptls.smoothing.driver import StrategyDriver

STATEFUL = ["online", "self_distill", "feedback"]

K = 5
WORLD = 2
COUNTS = [12, 10, 8, 6, 4]  # 40 training samples


def batches(device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Four batches of 10 samples (indices 0..39), logits that are often right."""
    g = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(K), torch.tensor(COUNTS))
    order = torch.randperm(len(y), generator=g)
    out = []
    for rows in order.split(10):
        logits = torch.randn(len(rows), K, generator=g) + 3 * torch.eye(K)[y[rows]]
        out.append((logits.to(device), y[rows].to(device), rows.to(device)))
    return out


def make(name: str, device: str = "cpu"):
    strategy = STRATEGIES[name]()
    strategy.setup(num_classes=K, class_counts=COUNTS)
    StrategyDriver(strategy).set_epoch(0, 3)
    return strategy.to(device)


def run_epoch(strategy, parts, device: str = "cpu") -> None:
    for i, (logits, targets, indices) in enumerate(batches(device)):
        if i % WORLD in parts:
            strategy(logits, targets, indices=indices)  # a training forward: applied epsilon
            strategy.observe(logits, targets, indices)
    StrategyDriver(strategy).on_epoch_end()


def worker(rank: int, backend: str, init_file: str, out_dir: str, names: list[str]) -> None:
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for name in names:
            strategy = make(name, device)
            run_epoch(strategy, {rank}, device)
            state = {k: v.cpu() for k, v in strategy.get_extra_state().items()}
            torch.save(state, Path(out_dir) / f"{name}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


class Counting(SmoothingStrategy, register=False):
    """A toy strategy: counts training rows per class; epsilon grows with the count."""

    name = "counting"

    def setup(self, num_classes, class_counts=None):
        super().setup(num_classes, class_counts)
        self.add_state("seen", torch.zeros(num_classes, dtype=torch.float64), reduce="sum")
        self.add_state("peak", torch.zeros(num_classes), reduce="max")
        self.add_state("total", torch.zeros(num_classes, dtype=torch.float64))

    def smoothing(self, logits, targets, indices=None):
        return SoftTarget(0.1)

    def observe(self, logits, targets, indices=None):
        self.seen.index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        self.peak = torch.maximum(self.peak, logits.max(0).values)

    def update_state(self):
        self.total += self.seen


def counting() -> Counting:
    s = Counting()
    s.setup(num_classes=3)
    return s


def test_per_epoch_states_reset_after_the_update_persistent_ones_stay():
    s = counting()
    s.observe(torch.zeros(4, 3), torch.tensor([0, 0, 2, 1]))
    assert s.seen.tolist() == [2, 1, 1]
    StrategyDriver(s).on_epoch_end()
    assert s.seen.tolist() == [0, 0, 0] and s.total.tolist() == [2, 1, 1]
    s.observe(torch.zeros(1, 3), torch.tensor([2]))
    StrategyDriver(s).on_epoch_end()
    assert s.total.tolist() == [2, 1, 2]


def test_states_are_not_buffers_and_round_trip_through_the_state_dict():
    s = counting()
    s.observe(torch.zeros(2, 3), torch.tensor([1, 1]))
    assert list(s.named_buffers()) == []
    fresh = counting()
    fresh.load_state_dict(s.state_dict())
    assert fresh.seen.tolist() == [0, 2, 0]


def test_module_dtype_casts_leave_states_alone():
    s = counting().half()
    assert s.seen.dtype == torch.float64 and s.peak.dtype == torch.float32
    s.double()
    assert s.peak.dtype == torch.float32


def test_a_checkpoint_of_other_shapes_or_names_is_refused_clearly():
    s = counting()
    other = Counting()
    other.setup(num_classes=4)
    with pytest.raises(ValueError, match=r"Counting.seen has shape \(4,\), expected \(3,\)"):
        s.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match=r"\['bogus'\] that Counting does not declare"):
        s.set_extra_state({"bogus": torch.zeros(1)})
    with pytest.raises(ValueError, match="reduce must be one of"):
        s.add_state("x", torch.zeros(1), reduce="mean")


def test_the_applied_epsilon_counts_training_rows_with_the_schedule():
    s = make("uniform")  # epsilon 0.1, constant schedule
    logits, targets = torch.randn(6, K), torch.tensor([0, 1, 2, 3, 4, -100])
    s(logits, targets)
    s.eval()
    s(logits, targets)  # evaluation rows are not counted
    s.train()
    StrategyDriver(s).on_epoch_end()
    assert StrategyDriver(s).smoothing_amount() == pytest.approx(0.1)
    assert s.summary()["smoothing/applied_epsilon"] == pytest.approx(0.1)


def spawn(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run :func:`worker` on WORLD processes; their states land in ``tmp_path``."""
    # spawned processes import this module by its name under the repository root
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    args = (backend, str(tmp_path / "init"), str(tmp_path), STATEFUL)
    mp.spawn(worker, args=args, nprocs=WORLD, join=True)


@pytest.mark.ddp
@pytest.mark.slow
def test_every_rank_ends_the_epoch_with_the_state_one_process_computes(tmp_path, monkeypatch):
    spawn("gloo", tmp_path, monkeypatch)
    for name in STATEFUL:
        single = make(name)
        run_epoch(single, set(range(WORLD)))
        expected = single.get_extra_state()
        for rank in range(WORLD):
            got = torch.load(tmp_path / f"{name}_rank{rank}.pt")
            assert got.keys() == expected.keys()
            for key in expected:
                torch.testing.assert_close(
                    got[key], expected[key], rtol=1e-6, atol=1e-7, equal_nan=True, msg=key
                )


@pytest.mark.gpu
@pytest.mark.ddp
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL)")
def test_stateful_strategies_reduce_under_nccl(tmp_path, monkeypatch):
    spawn("nccl", tmp_path, monkeypatch)
    for name in STATEFUL:
        states = [torch.load(tmp_path / f"{name}_rank{r}.pt") for r in range(WORLD)]
        for key in states[0]:
            assert torch.equal(states[0][key], states[1][key]), (name, key)


def test_every_registered_strategy_checkpoints_declared_state_only():
    # Buffers would be broadcast from rank 0 by DDP at every step; constants derived from
    # the setup (class-frequency epsilon) may be non-persistent buffers, state may not.
    for name in STRATEGIES:
        keys = make(name).state_dict().keys()
        assert keys and all(k.endswith("_extra_state") for k in keys), (name, list(keys))
