"""Benchmark: cost of one CalibrationSuite update relative to one softmax over the same logits.

Plain script (run by ``make bench``); prints two markdown tables: the update against one
softmax (and torchmetrics' ECE), then where the update's time goes: preparing the batch
(softmax, top-1, per-row facts), the classwise-ECE bin table (the one part that touches
every probability again), and the rest. Everything is timed in this one process with the
candidates interleaved inside every repeat, and the median over repeats is reported, so a
noisy neighbour slows all candidates alike. ``--clock cpu`` measures the CPU time this
process spends instead of wall time: on a shared machine it is blind to the time other
processes take the cores (use it with ``--threads 1``).

    python scripts/bench_metrics.py [--repeats 31] [--threads N] [--clock wall|cpu]
                                    [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchmetrics.classification import MulticlassCalibrationError

from adaptls.metrics import CalibrationSuite
from adaptls.metrics._inputs import iter_predictions
from adaptls.metrics.classwise_ece import classwise_gaps

SHAPES = ((4096, 10), (4096, 100), (1024, 1000))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _timer(device: torch.device, clock: Callable[[], float]) -> Callable[[Callable], float]:
    def measure(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    return measure


def bench_shape(
    n: int, k: int, repeats: int, device: torch.device, clock: Callable[[], float]
) -> dict[str, float]:
    """Median seconds per call of each candidate on one (N, K) batch."""
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(n, k, generator=generator)).to(device)
    targets = torch.randint(0, k, (n,), generator=generator).to(device)
    suite = CalibrationSuite(k).to(device)
    reference = MulticlassCalibrationError(k, n_bins=15, norm="l1").to(device)

    def suite_update() -> None:
        suite.update(logits, targets)
        # The AdaECE list state grows with every call; drop it so memory stays flat.
        suite.confidences.clear()
        suite.correct.clear()

    def torchmetrics_update() -> None:
        reference.update(logits, targets)
        reference.reset()

    prepared = list(iter_predictions(logits, targets, k))

    candidates = {
        "softmax": lambda: torch.softmax(logits, dim=-1),
        # The floor of any top-label metric: probabilities, then confidence and prediction.
        "softmax+max": lambda: torch.softmax(logits, dim=-1).max(dim=-1),
        "suite": suite_update,
        "torchmetrics ECE": torchmetrics_update,
        "prepare": lambda: list(iter_predictions(logits, targets, k)),
        "classwise": lambda: [classwise_gaps(batch, 15) for batch in prepared],
    }
    measure = _timer(device, clock)
    for fn in candidates.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(measure(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(
        f"CalibrationSuite.update vs one softmax: {device}, {torch.get_num_threads()} threads, "
        f"{args.clock} clock, median of {args.repeats} interleaved repeats, float32 logits, "
        f"15 bins\n"
    )
    rows = [(n, k, bench_shape(n, k, args.repeats, device, CLOCKS[args.clock])) for n, k in SHAPES]
    print(
        "| N | K | softmax (us) | softmax+max / softmax | suite update (us) | suite / softmax "
        "| torchmetrics ECE update (us) | torchmetrics / softmax |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, k, t in rows:
        soft = t["softmax"]
        print(
            f"| {n} | {k} | {soft * 1e6:.0f} | {t['softmax+max'] / soft:.2f}x "
            f"| {t['suite'] * 1e6:.0f} | {t['suite'] / soft:.2f}x "
            f"| {t['torchmetrics ECE'] * 1e6:.0f} | {t['torchmetrics ECE'] / soft:.2f}x |"
        )
    print("\nWhere a suite update goes, in softmax passes:\n")
    print("| N | K | prepare (softmax, top-1, per-row) | classwise bin table | the rest |")
    print("|---:|---:|---:|---:|---:|")
    for n, k, t in rows:
        soft = t["softmax"]
        rest = t["suite"] - t["prepare"] - t["classwise"]
        print(
            f"| {n} | {k} | {t['prepare'] / soft:.2f}x | {t['classwise'] / soft:.2f}x "
            f"| {rest / soft:.2f}x |"
        )


if __name__ == "__main__":
    main()
