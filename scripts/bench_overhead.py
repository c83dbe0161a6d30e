"""Framework overhead: one epoch with SmoothingClassifier against a plain LightningModule.

Both train the same network (built from the same seed, so the same initial weights) on
the same data with the same optimizer, scheduler and Trainer settings (the ``trainer``
config group: deterministic, 32-bit, progress bar on, atomic checkpoints), for one epoch
and its validation pass:

- **adaptls**: ``SmoothingClassifier`` + ``UniformSmoothing(0.1)`` exactly as
  ``python -m adaptls.train logger=none`` builds it (``adaptls.train.build``): the
  calibration metrics on validation and every default callback of
  conf/callbacks/default.yaml (progress bar, last and best checkpoints, temperature
  scaling's logit collection, RNG state, checkpoint on interrupt);
- **plain**: a LightningModule with ``F.cross_entropy(label_smoothing=0.1)`` that logs
  ``train/loss`` (progress bar) and the validation loss and accuracy, with Lightning's
  default callbacks (progress bar, one checkpoint per epoch) and no calibration metrics.

Repeats are interleaved (every round runs both, in alternating order); the ratio is the
median over rounds of the per-round throughput ratio adaptls / plain, and the extra time is
the median over rounds of the per-round difference adaptls - plain, per epoch and per
training step (a fit's fixed costs included: ``--epochs 5`` spreads them).
``--train-only`` also times the epoch without validation. No logger for either (a run
tracker costs both the same). Runs on CUDA unchanged (``--device cuda``; the default when
one is present).

    python scripts/bench_overhead.py [--repeats 7] [--data mnist1d] [--model cnn1d]
                                     [--device cuda] [--threads 1] [--train-only]
                                     [--epochs 1] [--clock wall|process]

``--epochs N`` fits N epochs instead of one (the fixed costs of a fit -- model summary,
Lightning creating and tearing down each logged key -- then weigh less); ``--clock process``
times the process' CPU time instead of the wall clock (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_report  # scripts/, this script's directory, is on sys.path
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

from adaptls.module import SmoothingClassifier
from adaptls.train import CONFIG_DIR, build

EPS = 0.1


class PlainClassifier(pl.LightningModule):
    """What a user writes without adaptls: label-smoothing CE, loss and accuracy logged."""

    def __init__(self, net: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.scheduler_factory = net, optimizer, scheduler

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = F.cross_entropy(self.net(x), y, label_smoothing=EPS)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(-1) == y).float().mean())

    # the same optimizer and epoch-wise scheduler as SmoothingClassifier's
    configure_optimizers = SmoothingClassifier.configure_optimizers


def config(args: argparse.Namespace, output_dir: Path) -> DictConfig:
    overrides = [
        f"hydra.runtime.output_dir={output_dir}",
        "logger=none",
        "smoothing=uniform",
        f"smoothing.epsilon={EPS}",
        f"data={args.data}",
        f"model={args.model}",
        "trainer=gpu" if args.device == "cuda" else "trainer=cpu",
        f"trainer.max_epochs={args.epochs}",
        *(["+trainer.limit_val_batches=0"] if args.no_val else []),
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def generate_once() -> None:
    """Generate MNIST-1D once for all runs (15 s each time on a loaded 2-core machine)."""
    from adaptls.data import mnist1d

    mnist1d.generate_mnist1d = functools.lru_cache(maxsize=None)(mnist1d.generate_mnist1d)


def run(
    kind: str, cfg: DictConfig, output_dir: Path, clock: Callable[[], float]
) -> tuple[float, int]:
    """Build and fit; (seconds of ``trainer.fit`` by ``clock``, training samples)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module, trainer = build(cfg)
    if kind == "plain":
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the same initial weights
        _, twin, _ = build(cfg)
        module = PlainClassifier(twin.net, twin.optimizer_factory, twin.scheduler_factory)
        callbacks = [
            TQDMProgressBar(refresh_rate=cfg.callbacks.progress_bar.refresh_rate),
            ModelCheckpoint(dirpath=output_dir / "plain_checkpoints"),
        ]
        trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks)
    # the progress bar and model summary still draw, into a buffer instead of the terminal
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        start = clock()
        trainer.fit(module, datamodule=datamodule)
        if torch.cuda.is_available() and cfg.trainer.accelerator == "gpu":
            torch.cuda.synchronize()
        seconds = clock() - start
    samples = trainer.num_training_batches * cfg.data.batch_size * cfg.trainer.max_epochs
    # Every run starts, as a real one does, without checkpoints from earlier runs (else
    # Lightning versions the names, best-v1.ckpt, ..., probing one more name each run).
    for written in ("checkpoints", "plain_checkpoints"):
        shutil.rmtree(output_dir / written, ignore_errors=True)
    return seconds, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default="mnist1d")
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the config's 1)")
    parser.add_argument("--train-only", action="store_true", help="also time without validation")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per fit (the target: 1)")
    parser.add_argument(
        "--clock",
        choices=("wall", "process"),
        default="wall",
        help="process: this process' CPU time (steadier on a shared machine; CPU only)",
    )
    args = parser.parse_args()
    if args.clock == "process" and args.device == "cuda":
        parser.error("--clock process measures host CPU time: use --clock wall with --device cuda")
    clock = {"wall": time.perf_counter, "process": time.process_time}[args.clock]
    torch.set_num_threads(args.threads)
    generate_once()
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    epochs = "one epoch" if args.epochs == 1 else f"{args.epochs} epochs"
    print(f"# framework overhead: {epochs} of {args.model} on {args.data}, {args.device}")
    print(
        f"# torch {torch.__version__}, pytorch_lightning {pl.__version__}, {args.threads} "
        f"thread(s), {args.clock} clock, {args.repeats} interleaved rounds; ratio = median "
        "over rounds of throughput(adaptls) / throughput(plain)"
    )
    print()
    print(
        "| fit | plain (s) | adaptls (s) | throughput adaptls / plain "
        "| adaptls - plain per epoch (ms) | per step (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for no_val in [False, True] if args.train_only else [False]:
        args.no_val = no_val
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config(args, Path(tmp))
            times: dict[str, list[float]] = {"plain": [], "adaptls": []}
            ratios, extra = [], []
            run("plain", cfg, Path(tmp), clock)  # warm-up: data generation, imports, kernels
            run("adaptls", cfg, Path(tmp), clock)
            for r in range(args.repeats):
                order = ("plain", "adaptls") if r % 2 == 0 else ("adaptls", "plain")
                result = {kind: run(kind, cfg, Path(tmp), clock) for kind in order}
                for kind, (seconds, _) in result.items():
                    times[kind].append(seconds)
                (t_plain, n_plain), (t_ours, n_ours) = result["plain"], result["adaptls"]
                ratios.append((n_ours / t_ours) / (n_plain / t_plain))
                extra.append(t_ours - t_plain)
            steps = n_ours // cfg.data.batch_size  # both train the same batches
        what = "training only" if no_val else "training + validation"
        print(
            f"| {what} | {statistics.median(times['plain']):.3f} | "
            f"{statistics.median(times['adaptls']):.3f} | {statistics.median(ratios):.3f}x | "
            f"{1e3 * statistics.median(extra) / args.epochs:+.1f} | "
            f"{1e3 * statistics.median(extra) / steps:+.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    bench_report.run(
        main,
        "bench_overhead",
        "Framework overhead: adaptls vs a plain LightningModule (`scripts/bench_overhead.py`)",
    )
