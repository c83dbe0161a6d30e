"""Benchmark: cost of one CalibrationSuite update relative to one softmax over the same logits.

Plain script (run by ``make bench``); prints markdown tables: the update against one softmax
(and torchmetrics' ECE), then where the update's time goes: preparing the batch (softmax,
top-1, per-row facts), the classwise-ECE bin table (the one part that touches every
probability again), and the rest. ``--floors`` adds the cost of the single passes any
implementation of the suite needs on top of the softmax. Everything is timed in this one
process with the candidates interleaved inside every repeat, and the median over repeats
is reported, so a noisy neighbour slows all candidates alike. ``--clock cpu`` measures the
CPU time this process spends instead of wall time: on a shared machine it is blind to the
time other processes take the cores (use it with ``--threads 1``).

    python scripts/bench_metrics.py [--repeats 31] [--threads N] [--clock wall|cpu]
                                    [--device cpu|cuda] [--floors]
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
from adaptls.metrics.classwise_ece import classwise_gaps, search_group

SHAPES = ((4096, 10), (4096, 100), (1024, 1000))
N_BINS = 15
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


def median_times(
    candidates: dict[str, Callable[[], object]], repeats: int, measure: Callable
) -> dict[str, float]:
    """Median seconds per call of each candidate, all interleaved within every repeat."""
    for fn in candidates.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(measure(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def suite_candidates(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Callable]:
    """The softmax baseline, the suite update, torchmetrics' ECE and the update's parts."""
    k = logits.shape[1]
    suite = CalibrationSuite(k).to(logits.device)
    reference = MulticlassCalibrationError(k, n_bins=N_BINS, norm="l1").to(logits.device)

    def suite_update() -> None:
        suite.update(logits, targets)
        # The AdaECE list state grows with every call; drop it so memory stays flat.
        suite.confidences.clear()
        suite.correct.clear()

    def torchmetrics_update() -> None:
        reference.update(logits, targets)
        reference.reset()

    prepared = list(iter_predictions(logits, targets, k))
    return {
        "softmax": lambda: torch.softmax(logits, dim=-1),
        # The floor of an argmax-based top-label metric: probabilities, then max and index.
        "softmax+max": lambda: torch.softmax(logits, dim=-1).max(dim=-1),
        "suite": suite_update,
        "torchmetrics ECE": torchmetrics_update,
        "prepare": lambda: list(iter_predictions(logits, targets, k)),
        "classwise": lambda: [classwise_gaps(batch, N_BINS) for batch in prepared],
    }


def floor_candidates(logits: torch.Tensor) -> dict[str, Callable]:
    """Single passes over N x K that the suite needs beyond the softmax, each on its own:
    top-1 (row max), Brier (sum of squares), and the classwise bin table, either scattering
    every probability (bin index, then scatter-add) or first finding the few >= 1/B (max
    over G rows, then nonzero) and summing the rest by columns."""
    probs = torch.softmax(logits, dim=-1)
    bins = (probs * N_BINS).long()
    table = probs.new_zeros(N_BINS + 1, probs.shape[1])
    group = search_group(probs.shape[1])
    cells = probs[: len(probs) - len(probs) % group].reshape(group, -1)
    return {
        "softmax": lambda: torch.softmax(logits, dim=-1),
        "row max": lambda: probs.amax(dim=1),
        "sum of squares": lambda: torch.dot(probs.view(-1), probs.view(-1)),
        "bin index": lambda: (probs * N_BINS).long(),
        "scatter-add all": lambda: table.scatter_add_(0, bins, probs),
        "max over G rows + nonzero": lambda: (cells.amax(dim=0) >= 1 / N_BINS).nonzero(),
        "column sums": lambda: probs.sum(dim=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--floors", action="store_true", help="also time the single passes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    measure = _timer(device, CLOCKS[args.clock])

    print(
        f"CalibrationSuite.update vs one softmax: {device}, {torch.get_num_threads()} threads, "
        f"{args.clock} clock, median of {args.repeats} interleaved repeats, float32 logits, "
        f"{N_BINS} bins\n"
    )
    inputs = {}
    for n, k in SHAPES:
        generator = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(n, k, generator=generator)).to(device)
        targets = torch.randint(0, k, (n,), generator=generator).to(device)
        inputs[n, k] = logits, targets
    rows = {
        shape: median_times(suite_candidates(*xy), args.repeats, measure)
        for shape, xy in inputs.items()
    }
    print(
        "| N | K | softmax (us) | softmax+max / softmax | suite update (us) | suite / softmax "
        "| torchmetrics ECE update (us) | torchmetrics / softmax |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, k), t in rows.items():
        soft = t["softmax"]
        print(
            f"| {n} | {k} | {soft * 1e6:.0f} | {t['softmax+max'] / soft:.2f}x "
            f"| {t['suite'] * 1e6:.0f} | {t['suite'] / soft:.2f}x "
            f"| {t['torchmetrics ECE'] * 1e6:.0f} | {t['torchmetrics ECE'] / soft:.2f}x |"
        )
    print("\nWhere a suite update goes, in softmax passes:\n")
    print("| N | K | prepare (softmax, top-1, per-row) | classwise bin table | the rest |")
    print("|---:|---:|---:|---:|---:|")
    for (n, k), t in rows.items():
        soft = t["softmax"]
        rest = t["suite"] - t["prepare"] - t["classwise"]
        print(
            f"| {n} | {k} | {t['prepare'] / soft:.2f}x | {t['classwise'] / soft:.2f}x "
            f"| {rest / soft:.2f}x |"
        )
    if not args.floors:
        return
    floors = {
        shape: median_times(floor_candidates(xy[0]), args.repeats, measure)
        for shape, xy in inputs.items()
    }
    names = [name for name in next(iter(floors.values())) if name != "softmax"]
    print("\nSingle passes over the N x K probabilities, in softmax passes:\n")
    print("| N | K | " + " | ".join(names) + " |")
    print("|---:|---:|" + "---:|" * len(names))
    for (n, k), t in floors.items():
        cells = " | ".join(f"{t[name] / t['softmax']:.2f}x" for name in names)
        print(f"| {n} | {k} | {cells} |")


if __name__ == "__main__":
    main()
