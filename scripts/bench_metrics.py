"""Benchmark: one CalibrationSuite update against the torchmetrics updates of the same figures.

The suite computes accuracy, balanced accuracy, mean confidence, ECE, MCE, AdaECE,
classwise ECE, NLL, Brier and the long-tail group accuracies from one pass over a batch.
torchmetrics has four of these figures: accuracy (``MulticlassAccuracy``, micro),
balanced accuracy (macro ``MulticlassAccuracy``), ECE and MCE (``MulticlassCalibrationError``
with ``norm="l1"`` and ``"max"``); the reference is their update as a user would run it,
in one ``MetricCollection`` (whose compute groups update ECE and MCE once) with the
default argument validation, on the same logits. The bar: the suite's update costs no
more than that (ratio <= 1.0), at N x K = 4096 x 10, 4096 x 100 and 1024 x 1000.

``--parts`` also times the torchmetrics metrics one by one and the suite without its
classwise shortcut (every probability scattered into the bin table), the one fast path
whose worth depends on the machine. Every candidate is timed in this one process,
interleaved within every repeat; a ratio is the median over repeats of the per-repeat
ratio, so a noisy neighbour slows all candidates alike. State that grows with every
update (the suite's AdaECE rows, torchmetrics' confidences) is dropped between timed
calls, outside the clock. Runs unchanged on CUDA (``--device cuda``; the default when one
is present). ``--clock cpu`` measures this process's CPU time, blind to time other
processes take the cores (use it with ``--threads 1``).

    python scripts/bench_metrics.py [--repeats 31] [--threads N] [--clock wall|cpu]
                                    [--device cpu|cuda] [--parts]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import bench_report  # scripts/, this script's directory, is on sys.path
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from adaptls.metrics import CalibrationSuite
from adaptls.metrics import classwise_ece as classwise_module

SHAPES = ((4096, 10), (4096, 100), (1024, 1000))
N_BINS = 15
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
SUITE, REFERENCE = "suite", "torchmetrics"
Case = tuple[Callable[[], object], Callable[[], object]]  # (timed update, untimed cleanup)


def torchmetrics_figures(k: int) -> dict[str, Metric]:
    return {
        "acc": MulticlassAccuracy(k, average="micro"),
        "balanced_acc": MulticlassAccuracy(k, average="macro"),
        "ece": MulticlassCalibrationError(k, n_bins=N_BINS, norm="l1"),
        "mce": MulticlassCalibrationError(k, n_bins=N_BINS, norm="max"),
    }


def cases(logits: torch.Tensor, targets: torch.Tensor, parts: bool) -> dict[str, Case]:
    k, device = logits.shape[1], logits.device
    suite = CalibrationSuite(k, n_bins=N_BINS).to(device)
    collection = MetricCollection(torchmetrics_figures(k)).to(device)
    collection.update(logits, targets)  # the first update settles the compute groups
    collection.reset()

    def drop_rows() -> None:  # the AdaECE state grows with every update
        suite.confidences.clear()
        suite.correct.clear()

    out: dict[str, Case] = {
        SUITE: (lambda: suite.update(logits, targets), drop_rows),
        REFERENCE: (lambda: collection.update(logits, targets), collection.reset),
    }
    if parts:

        def scatter_everything() -> None:
            search = classwise_module.search_group
            classwise_module.search_group = lambda num_classes: 1
            try:
                suite.update(logits, targets)
            finally:
                classwise_module.search_group = search

        out["suite, classwise: scatter all"] = (scatter_everything, drop_rows)
        for name, metric in torchmetrics_figures(k).items():
            metric = metric.to(device)
            out[f"torchmetrics {name}"] = (
                lambda m=metric: m.update(logits, targets),
                metric.reset,
            )
    return out


def ratios_to_reference(
    candidates: dict[str, Case], repeats: int, clock: Callable[[], float], device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per update of each candidate and median per-repeat ratio to the
    reference, all interleaved within every repeat."""
    for update, cleanup in candidates.values():  # warm-up
        update()
        cleanup()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, (update, cleanup) in candidates.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = clock()
            update()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(clock() - start)
            cleanup()
    ref = times[REFERENCE]
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {
        name: statistics.median(a / b for a, b in zip(t, ref, strict=True))
        for name, t in times.items()
    }
    return medians, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", action="store_true", help="also time the parts")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock != "wall" and device.type == "cuda":
        parser.error("--clock cpu measures host CPU time: use --clock wall with --device cuda")

    print(
        f"# CalibrationSuite.update vs the torchmetrics updates of the same figures "
        f"(accuracy, balanced accuracy, ECE, MCE in one MetricCollection): {device}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock, median of {args.repeats} "
        f"interleaved repeats, float32 logits, {N_BINS} bins"
    )
    print()
    rows = {}
    for n, k in SHAPES:
        generator = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(n, k, generator=generator)).to(device)
        targets = torch.randint(0, k, (n,), generator=generator).to(device)
        rows[n, k] = ratios_to_reference(
            cases(logits, targets, args.parts), args.repeats, CLOCKS[args.clock], device
        )
    print("| N x K | suite update (us) | torchmetrics updates (us) | suite / torchmetrics |")
    print("|---|---:|---:|---:|")
    for (n, k), (times, ratios) in rows.items():
        print(
            f"| {n} x {k} | {times[SUITE] * 1e6:.0f} | {times[REFERENCE] * 1e6:.0f} "
            f"| {ratios[SUITE]:.2f}x |"
        )
    if not args.parts:
        return
    names = [name for name in next(iter(rows.values()))[0] if name not in (SUITE, REFERENCE)]
    print("\nParts, time / the torchmetrics collection's update:\n")
    print("| N x K | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for (n, k), (_, ratios) in rows.items():
        print(f"| {n} x {k} | " + " | ".join(f"{ratios[name]:.2f}x" for name in names) + " |")


if __name__ == "__main__":
    bench_report.run(
        main, "bench_metrics", "Calibration metrics vs torchmetrics (`scripts/bench_metrics.py`)"
    )
