"""Benchmark the soft-target cross-entropy against PyTorch's label-smoothing CE.

For each (N, K) it times fp32 forward + backward of every case and prints its ratio to
``F.cross_entropy(x, y, label_smoothing=0.1)`` measured in the same process: repeats are
interleaved (every case sees the same machine state), each timed step follows untimed
steps of the same case, and a ratio is the median over the rounds of the per-round ratios
(robust to load that drifts over the run). With ``--compile`` (the default) the strategy
call, the function and the reference also run under ``torch.compile`` and their ratio to
the compiled reference is printed next to the eager one. The extra peak memory is in units
of L = N * K * 4 bytes (the size of the fp32 logits), for the eager cases: on CUDA from
``torch.cuda.max_memory_allocated``; on CPU each (case, size) runs once in a fresh
subprocess that resets the kernel's peak-RSS mark (/proc/self/clear_refs) after building
its inputs and reports the peak's growth over the resident size before the step (glibc's
mmap threshold is pinned low so freed blocks go back to the OS and the resident size
follows what is live).

The strategy call is ``UniformSmoothing(0.1)(x, y)`` after ``setup``, as a training loop
makes it (training mode: the strategy's bookkeeping of the epsilon it applied included);
``.eval()`` shows it without that bookkeeping. A summary table at the end lists the
strategy call's and the function's ratios at every size, eager and compiled.

Clocks: ``wall`` (default), ``cpu`` (this thread's CPU time: leaves out time spent
descheduled on a loaded machine; use it with ``--threads 1``, as with more threads it
misses the other threads' work) or ``process`` (CPU time of all threads, spinning
included). Runs unchanged on CUDA (``--device cuda``, the default when one is present).

    python scripts/bench_loss.py [--device cuda] [--threads 1] [--clock cpu]
                                 [--repeats 9] [--sizes 65536x10,...] [--no-compile]
                                 [--no-memory]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import bench_report  # scripts/, this script's directory, is on sys.path
import torch
import torch.nn.functional as F

from adaptls.smoothing import UniformSmoothing, soft_target_cross_entropy

SIZES = (
    (128, 10),
    (1024, 10),
    (65536, 10),
    (256, 100),
    (4096, 100),
    (1024, 1000),
    (8192, 1000),
    (1024, 32000),
)
EPS = 0.1
# A K x K class matrix is 4 GB at K = 32000: OLS-style rows are gathered from a table of
# at most this many distributions instead (same access pattern: one gather per row).
MAX_PRIOR_ROWS = 4096
SETTLE_STEPS = 2
REFERENCE = "torch CE label_smoothing"
STRATEGY = "UniformSmoothing(0.1)(x, y)"
STRATEGY_EVAL = "UniformSmoothing(0.1).eval()(x, y)"
FUNCTION = "soft_target_cross_entropy(x, y, 0.1)"
COMPILED = (REFERENCE, STRATEGY, FUNCTION)  # the cases also timed under torch.compile


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
    strategy = UniformSmoothing(EPS)
    strategy.setup(num_classes=k)
    strategy.to(inp["logits"].device)
    # the same without the training-mode bookkeeping (the applied epsilon's running sums)
    evaluating = UniformSmoothing(EPS).eval()
    evaluating.setup(num_classes=k)
    evaluating.to(inp["logits"].device)

    def dense(x: torch.Tensor) -> torch.Tensor:
        t = torch.full_like(x, EPS / k)
        t.scatter_add_(1, y.unsqueeze(1), torch.full_like(x[:, :1], 1 - EPS))
        return -(t * torch.log_softmax(x, 1)).sum(1).mean()

    # The dense reference goes last: what runs after it is measured slow even after the
    # settling steps, and the first case of the next round is no target of this table.
    return {
        "torch CE (no smoothing)": lambda x: F.cross_entropy(x, y),
        REFERENCE: lambda x: F.cross_entropy(x, y, label_smoothing=EPS),
        STRATEGY: lambda x: strategy(x, y),
        STRATEGY_EVAL: lambda x: evaluating(x, y),
        FUNCTION: lambda x: soft_target_cross_entropy(x, y, EPS),
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


def time_all(
    n: int, k: int, device: str, repeats: int, clock: Callable[[], float], compile_: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Median times and median per-round ratios (to the eager reference, or for
    ``compiled: <case>`` to the compiled reference) of every case."""
    inp = make_inputs(n, k, device)
    fns = cases(inp)
    if compile_:
        eager = {name: fns[name] for name in COMPILED}
        fns = {
            **fns,
            **{f"compiled: {name}": torch.compile(fn, dynamic=False) for name, fn in eager.items()},
        }
    for fn in fns.values():  # warm-up (and compilation)
        step(fn, inp["logits"])
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
    times = {name: statistics.median(v) for name, v in samples.items()}
    ratios = {}
    for name, v in samples.items():
        ref = samples[f"compiled: {REFERENCE}" if name.startswith("compiled: ") else REFERENCE]
        ratios[name] = statistics.median(t / r for t, r in zip(v, ref, strict=True))
    return times, ratios


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
    parser.add_argument("--clock", choices=("wall", "cpu", "process"), default="wall")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sizes", default=",".join(f"{n}x{k}" for n, k in SIZES))
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory column")
    parser.add_argument("--memory-worker", nargs=2, metavar=("NxK", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        n, k = map(int, args.memory_worker[0].split("x"))
        memory_worker(n, k, args.memory_worker[1])
        return
    if args.clock != "wall" and args.device == "cuda":
        parser.error(
            "--clock cpu/process measure host CPU time: use --clock wall with --device cuda"
        )
    clock = {"wall": time.perf_counter, "cpu": time.thread_time, "process": time.process_time}[
        args.clock
    ]
    compile_ = not args.no_compile
    warnings.filterwarnings("ignore", message=".*TF32.*")
    torch.manual_seed(0)
    print(f"# soft-target cross-entropy, fp32 forward+backward on {args.device}")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"median of {args.repeats} interleaved rounds; ratios: median of per-round ratios "
        f"to {REFERENCE} (compiled cases: to the compiled reference)"
    )
    print()
    print("| N x K | case | time (ms) | time / torch LS | extra peak memory (L) |")
    print("|---|---|---:|---:|---:|")
    summary: dict[str, dict[tuple[int, int], float]] = {}
    for size in args.sizes.split(","):
        n, k = map(int, size.split("x"))
        times, ratios = time_all(n, k, args.device, args.repeats, clock, compile_)
        for name, t in times.items():
            summary.setdefault(name, {})[(n, k)] = ratios[name]
            if args.no_memory or name.startswith("compiled: "):
                mem_text = "-"
            else:
                if args.device == "cuda":
                    mem = peak_extra_cuda(n, k, name)
                else:
                    mem = peak_extra_cpu(n, k, name, args.threads)
                mem_text = "n/a" if math.isnan(mem) else f"{mem:.2f}"
            print(
                f"| {n} x {k} | {name} | {t * 1e3:.3f} | {ratios[name]:.2f}x | {mem_text} |",
                flush=True,
            )
    sizes = list(summary[REFERENCE])
    print()
    print(f"Time / {REFERENCE} (compiled: / the compiled reference), forward + backward:")
    print()
    print("| case | " + " | ".join(f"{n} x {k}" for n, k in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    rows = [STRATEGY, STRATEGY_EVAL, FUNCTION]
    rows += [f"compiled: {STRATEGY}", f"compiled: {FUNCTION}"] * compile_
    for name in rows:
        cells = " | ".join(f"{summary[name][s]:.2f}x" for s in sizes)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    bench_report.run(
        main, "bench_loss", "Smoothed loss vs PyTorch's label smoothing (`scripts/bench_loss.py`)"
    )
