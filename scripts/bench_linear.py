"""Benchmark the fused linear + soft-target cross-entropy against PyTorch's paths.

At N rows of D-dim hidden states and V classes (fp32, forward + backward of hidden,
weight and bias) it prints, for each case, the median wall time and process CPU time
(all threads) over interleaved repeats (each after an untimed step of the same case), their
ratios to PyTorch's chunked ``F.linear_cross_entropy`` without smoothing (the anchor:
PyTorch's best path; medians of the per-round ratios), and the extra peak memory in units
of L = N * V * 4 bytes (the fp32 logits' size):

  (a) F.cross_entropy(F.linear(h, W, b), y, label_smoothing=0.1)
  (b) F.linear_cross_entropy(h, W, y, linear_bias=b, options=LinearCrossEntropyOptions())
  (c) the same with label_smoothing=0.1 (PyTorch falls back to the full logits)
  (d) adaptls linear_soft_target_cross_entropy, uniform 0.1
  (e) adaptls, per-row epsilon with a (V,) prior
  (f) adaptls, per-row prior rows picked from a table (OLS-style), for information
  (g)-(i) strategies through ``StrategyDriver.linear_loss``, for information:
      confidence (max_prob; entropy, which costs one more pass over each chunk) and
      online smoothing with top-32 soft labels (learned from one observed batch)

Targets for (d) and (e): <= 0.1 L extra peak memory and <= 1.05x the time of (b).
CPU memory is measured as scripts/bench_loss.py does (whose helpers this imports): each
case runs once in a fresh subprocess that resets the kernel's peak-RSS mark after building
its inputs and reports the peak's growth over the resident size before the step. The
gradients themselves (N x D + V x D + V floats, 0.04 L at the default shape) count as
extra memory in every case. On CUDA, torch.cuda.max_memory_allocated.

    python scripts/bench_linear.py [--quick] [--threads 2] [--repeats 5]
                                   [--shape 8192x256x32000] [--device cuda]
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

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report
from bench_loss import proc_status_kib, reset_peak_rss, sync

from adaptls.smoothing import (
    ConfidenceSmoothing,
    OnlineSmoothing,
    SmoothingStrategy,
    linear_soft_target_cross_entropy,
)
from adaptls.smoothing.driver import StrategyDriver

FULL = (8192, 256, 32000)
QUICK = (2048, 256, 32000)
EPS = 0.1
MAX_PRIOR_ROWS = 4096  # table rows for case (f), as in bench_loss.py
ANCHOR = "(b) torch linear_cross_entropy chunked, no smoothing"
OURS = ("(d) adaptls uniform 0.1", "(e) adaptls per-row eps + (V,) prior")
INFO = (
    "(f) adaptls per-row prior (table rows)",
    "(g) confidence max_prob (driver.linear_loss)",
    "(h) confidence entropy (driver.linear_loss)",
    "(i) online topk=32 (driver.linear_loss)",
)
MEMORY_TARGET, TIME_TARGET = 0.1, 1.05


def make_inputs(n: int, d: int, v: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    m = min(v, MAX_PRIOR_ROWS)
    targets = torch.randint(0, v, (n,), generator=g)
    inp = {
        "hidden": torch.randn(n, d, generator=g),
        "weight": torch.randn(v, d, generator=g) / math.sqrt(d),
        "bias": torch.randn(v, generator=g) * 0.1,
        "targets": targets,
        "epsilon": torch.rand(n, generator=g) * 0.2,
        "prior": torch.softmax(torch.randn(v, generator=g), 0),
        "table": torch.softmax(torch.randn(m, v, generator=g), 1),
        "index": targets % m,
    }
    return {key: t.to(device) for key, t in inp.items()}


def cases(inp: dict[str, torch.Tensor]) -> dict[str, Callable]:
    y, eps_rows, prior = inp["targets"], inp["epsilon"], inp["prior"]
    table, index = inp["table"], inp["index"]
    options = torch.nn.LinearCrossEntropyOptions()
    ours = linear_soft_target_cross_entropy
    v, device = inp["weight"].shape[0], inp["weight"].device
    max_prob = _strategy(ConfidenceSmoothing(signal="max_prob"), v, device)
    entropy = _strategy(ConfidenceSmoothing(signal="entropy"), v, device)
    online = _strategy(OnlineSmoothing(topk=32), v, device)
    driver = StrategyDriver(online)
    driver.observe_linear(inp["hidden"], inp["weight"], y, bias=inp["bias"])
    driver.on_epoch_end()
    return {
        "(a) torch CE(linear) label_smoothing=0.1": lambda h, w, b: F.cross_entropy(
            F.linear(h, w, b), y, label_smoothing=EPS
        ),
        ANCHOR: lambda h, w, b: F.linear_cross_entropy(h, w, y, linear_bias=b, options=options),
        "(c) torch linear_cross_entropy chunked, label_smoothing=0.1": lambda h, w, b: (
            F.linear_cross_entropy(h, w, y, linear_bias=b, label_smoothing=EPS, options=options)
        ),
        OURS[0]: lambda h, w, b: ours(h, w, y, EPS, bias=b),
        OURS[1]: lambda h, w, b: ours(h, w, y, eps_rows, prior, bias=b),
        INFO[0]: lambda h, w, b: ours(h, w, y, 0.5, table, prior_index=index, bias=b),
        INFO[1]: lambda h, w, b: StrategyDriver(max_prob).linear_loss(h, w, y, bias=b),
        INFO[2]: lambda h, w, b: StrategyDriver(entropy).linear_loss(h, w, y, bias=b),
        INFO[3]: lambda h, w, b: StrategyDriver(online).linear_loss(h, w, y, bias=b),
    }


def _strategy(strategy: SmoothingStrategy, v: int, device: torch.device) -> SmoothingStrategy:
    strategy.setup(num_classes=v)
    return strategy.to(device)


def step(fn: Callable, inp: dict[str, torch.Tensor]) -> None:
    h, w, b = (inp[k].detach().requires_grad_() for k in ("hidden", "weight", "bias"))
    fn(h, w, b).backward()


def time_all(shape, device: str, repeats: int, skip: set[str]) -> dict[str, dict[str, float]]:
    """Per case: median wall and process-CPU seconds, and the medians of the per-round
    ratios to the anchor (b) (each round runs every case once, so a ratio compares steps
    taken seconds apart: steadier than a ratio of medians while other jobs come and go)."""
    inp = make_inputs(*shape, device)
    fns = {name: fn for name, fn in cases(inp).items() if name not in skip}
    for fn in fns.values():  # warm-up
        step(fn, inp)
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved: every case sees the same machine state
        for name, fn in fns.items():
            step(fn, inp)  # untimed, as in a training loop (allocator and caches settle)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step(fn, inp)
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {
        name: {
            "wall": med(wall[name]),
            "wall_ratio": med(t / a for t, a in zip(wall[name], wall[ANCHOR], strict=True)),
            "cpu": med(cpu[name]),
            "cpu_ratio": med(t / a for t, a in zip(cpu[name], cpu[ANCHOR], strict=True)),
        }
        for name in fns
    }


def peak_extra_cuda(shape, name: str) -> float:
    n, _, v = shape
    inp = make_inputs(*shape, "cuda")
    fn = cases(inp)[name]
    step(fn, inp)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step(fn, inp)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / (n * v * 4)


def peak_extra_cpu(shape, name: str, threads: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    size = "x".join(map(str, shape))
    out = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--memory-worker", size, name],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def memory_worker(shape, name: str) -> None:
    n, d, v = shape
    small = make_inputs(64, d, min(v, 512), "cpu")
    step(cases(small)[name], small)  # load kernels without touching the full size
    inp = make_inputs(n, d, v, "cpu")
    fn = cases(inp)[name]
    if not reset_peak_rss():
        print("nan")  # no way to reset the peak: building the inputs would hide the step's
        return
    before = proc_status_kib()["VmRSS"]
    step(fn, inp)
    print((proc_status_kib()["VmHWM"] - before) * 1024 / (n * v * 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default=None, help="NxDxV (default 8192x256x32000)")
    parser.add_argument(
        "--quick", action="store_true", help=f"the smaller shape {'x'.join(map(str, QUICK))}"
    )
    parser.add_argument("--skip-info", action="store_true", help="leave out cases (f)-(i)")
    parser.add_argument(
        "--memory-worker", nargs=2, metavar=("NxDxV", "CASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="linear_cross_entropy: ``options`` ignored")
    if args.memory_worker:
        memory_worker(tuple(map(int, args.memory_worker[0].split("x"))), args.memory_worker[1])
        return
    if args.shape:
        shape = tuple(map(int, args.shape.split("x")))
    else:
        shape = QUICK if args.quick else FULL
    skip = set(INFO) if args.skip_info else set()
    n, d, v = shape
    print(f"# fused linear + soft-target CE, fp32 forward+backward on {args.device}")
    print(
        f"# N={n} D={d} V={v}, L = N*V*4 bytes = {n * v * 4 / 2**20:.0f} MiB; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} "
        f"interleaved repeats; ratios are medians of per-round ratios to (b)"
    )
    grads = (n * d + v * d + v) * 4 / (n * v * 4)
    print(f"# the gradients of hidden, weight and bias alone are {grads:.3f} L")
    print()
    print("| case | wall (s) | wall / (b) | CPU (s) | CPU / (b) | extra peak memory (L) |")
    print("|---|---:|---:|---:|---:|---:|")
    times = time_all(shape, args.device, args.repeats, skip)
    verdicts = []
    for name, t in times.items():
        if args.device == "cuda":
            mem = peak_extra_cuda(shape, name)
        else:
            mem = peak_extra_cpu(shape, name, args.threads)
        mem_text = "n/a" if math.isnan(mem) else f"{mem:.3f}"
        print(
            f"| {name} | {t['wall']:.3f} | {t['wall_ratio']:.3f}x | {t['cpu']:.3f} "
            f"| {t['cpu_ratio']:.3f}x | {mem_text} |",
            flush=True,
        )
        if name in OURS:
            ok = mem <= MEMORY_TARGET and t["wall_ratio"] <= TIME_TARGET
            verdicts.append(
                f"# {name}: {'meets' if ok else 'MISSES'} the targets (extra memory "
                f"<= {MEMORY_TARGET} L: {mem:.3f}; wall time <= {TIME_TARGET}x (b): "
                f"{t['wall_ratio']:.3f}x)"
            )
    print()
    if shape != FULL:
        print(f"# (the targets are set at {'x'.join(map(str, FULL))}; this is another shape)")
    print("\n".join(verdicts))


if __name__ == "__main__":
    bench_report.run(
        main,
        "bench_linear",
        "Fused classifier + smoothed loss at vocabulary scale (`scripts/bench_linear.py`)",
    )
