"""Benchmark the fused soft-target cross-entropy against PyTorch's losses.

For each (N, K) it prints forward+backward time as a ratio to
``F.cross_entropy(label_smoothing=0.1)`` measured in the same process (interleaved
repeats, each after two untimed steps of the same case; median), and the extra peak memory in units of L = N * K * 4 bytes (the size of
the fp32 logits). On CUDA memory comes from ``torch.cuda.max_memory_allocated``; on CPU
each (case, size) runs once in a fresh subprocess that resets the kernel's peak-RSS mark
(/proc/self/clear_refs) after building its inputs and reports the peak's growth over the
resident size before the step (glibc's mmap threshold is pinned low so freed blocks go
back to the OS and the resident size follows what is live).

``--clock cpu`` times with this thread's CPU time instead of wall time: on a machine that
other jobs load, it leaves out the time the benchmark spends descheduled (use it with
``--threads 1``: with more threads, CPU time counts other threads' work and spinning).

    python scripts/bench_loss.py [--device cuda] [--threads 1] [--clock cpu]
                                 [--repeats 15] [--sizes 65536x10,...]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from adaptls.smoothing import soft_target_cross_entropy

SIZES = ((65536, 10), (8192, 1000), (1024, 32000))
EPS = 0.1
# A K x K class matrix is 4 GB at K = 32000: OLS-style rows are gathered from a table of
# at most this many distributions instead (same access pattern: one gather per row).
MAX_PRIOR_ROWS = 4096
SETTLE_STEPS = 2


def make_inputs(n: int, k: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    m = min(k, MAX_PRIOR_ROWS)
    targets = torch.randint(0, k, (n,), generator=g)
    return {
        "logits": torch.randn(n, k, generator=g).to(device),
        "targets": targets.to(device),
        "epsilon": (torch.rand(n, generator=g) * 0.2).to(device),
        "prior": torch.softmax(torch.randn(k, generator=g), 0).to(device),
        "table": torch.softmax(torch.randn(m, k, generator=g), 1).to(device),
        "index": (targets % m).to(device),
    }


def cases(inp: dict[str, torch.Tensor]) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    y, k = inp["targets"], inp["logits"].shape[1]

    def dense(x: torch.Tensor) -> torch.Tensor:
        t = torch.full_like(x, EPS / k)
        t.scatter_add_(1, y.unsqueeze(1), torch.full_like(x[:, :1], 1 - EPS))
        return -(t * torch.log_softmax(x, 1)).sum(1).mean()

    # The dense reference goes last: what runs after it is measured slow even after the
    # settling steps, and the first case of the next round is no target of this table.
    return {
        "torch CE (no smoothing)": lambda x: F.cross_entropy(x, y),
        "torch CE label_smoothing": lambda x: F.cross_entropy(x, y, label_smoothing=EPS),
        "fused uniform": lambda x: soft_target_cross_entropy(x, y, EPS),
        "fused per-row epsilon": lambda x: soft_target_cross_entropy(x, y, inp["epsilon"]),
        "fused shared prior": lambda x: soft_target_cross_entropy(x, y, EPS, inp["prior"]),
        "fused per-row prior (OLS rows)": lambda x: soft_target_cross_entropy(
            x, y, 0.5, inp["table"], prior_index=inp["index"]
        ),
        "dense soft-target reference": dense,
    }


def step(fn: Callable, logits: torch.Tensor) -> None:
    x = logits.detach().requires_grad_()
    fn(x).backward()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_all(n: int, k: int, device: str, repeats: int, clock: Callable[[], float]) -> dict:
    inp = make_inputs(n, k, device)
    fns = cases(inp)
    for fn in fns.values():  # warm-up
        step(fn, inp["logits"])
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved: every case sees the same machine state
        for name, fn in fns.items():
            # untimed steps first, as in a training loop: measured on CPU, the case that
            # follows the dense reference runs ~30% slower for its first step (not page
            # faults: user time) and still ~10% for its second
            for _ in range(SETTLE_STEPS):
                step(fn, inp["logits"])
            sync(device)
            t0 = clock()
            step(fn, inp["logits"])
            sync(device)
            samples[name].append(clock() - t0)
    return {name: statistics.median(v) for name, v in samples.items()}


def peak_extra_cuda(n: int, k: int, name: str) -> float:
    inp = make_inputs(n, k, "cuda")
    fn = cases(inp)[name]
    step(fn, inp["logits"])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step(fn, inp["logits"])
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / (n * k * 4)


def peak_extra_cpu(n: int, k: int, name: str, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--memory-worker", f"{n}x{k}", name],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def memory_worker(n: int, k: int, name: str) -> None:
    small = make_inputs(64, k, "cpu")
    step(cases(small)[name], small["logits"])  # load kernels without touching the full size
    inp = make_inputs(n, k, "cpu")
    fn = cases(inp)[name]
    if not reset_peak_rss():
        print("nan")  # no way to reset the peak: building the inputs would hide the step's
        return
    before = proc_status_kib()["VmRSS"]
    step(fn, inp["logits"])
    print((proc_status_kib()["VmHWM"] - before) * 1024 / (n * k * 4))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    status = proc_status_kib()
    return status["VmHWM"] - status["VmRSS"] < 1024  # reset, up to pages touched since


def proc_status_kib() -> dict[str, int]:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith("Vm"))
    return {key: int(value.split()[0]) for key, value in fields.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", default=",".join(f"{n}x{k}" for n, k in SIZES))
    parser.add_argument("--memory-worker", nargs=2, metavar=("NxK", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        n, k = map(int, args.memory_worker[0].split("x"))
        memory_worker(n, k, args.memory_worker[1])
        return
    if args.clock == "cpu" and args.device == "cuda":
        parser.error("--clock cpu measures host CPU time: use --clock wall with --device cuda")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    print(f"# fused soft-target cross-entropy, fp32 forward+backward on {args.device}")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"median of {args.repeats}"
    )
    print()
    print(
        "| N x K | case | time (ms) | time / torch LS | time / fused uniform | extra peak memory (L) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for size in args.sizes.split(","):
        n, k = map(int, size.split("x"))
        times = time_all(n, k, args.device, args.repeats, clock)
        ref, uni = times["torch CE label_smoothing"], times["fused uniform"]
        for name, t in times.items():
            if args.device == "cuda":
                mem = peak_extra_cuda(n, k, name)
            else:
                mem = peak_extra_cpu(n, k, name, args.threads)
            mem_text = "n/a" if math.isnan(mem) else f"{mem:.2f}"
            print(
                f"| {n} x {k} | {name} | {t * 1e3:.2f} | {t / ref:.2f}x | {t / uni:.2f}x "
                f"| {mem_text} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
