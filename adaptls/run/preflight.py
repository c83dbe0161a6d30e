"""Preflight checks of a run: each refuses a bad config with a ConfigError naming the key,
its value and what is allowed, before any data is loaded or anything is written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from adaptls.models.inputs import model_default_lr
from adaptls.run.config import ConfigError, call_partial, chosen_option
from adaptls.run.library_shims import last_checkpoint
from adaptls.run.model_fits_data import check_model_fits_data
from adaptls.run.rank_states import checkpoint_world_size
from adaptls.run.resume_schedule import check_resume_schedule
from adaptls.smoothing import Strategy
from adaptls.smoothing.driver import StrategyDriver

# Which weights the reported metrics come from: the last epoch's (as the calibration
# papers report) or the best checkpoint by `optimized_metric` on validation.
EVAL_CHECKPOINTS = ("last", "best")
log = logging.getLogger(__name__)


def resolve_default_lr(cfg: DictConfig, model_factory: Any) -> None:
    """``optimizer.lr: null`` becomes the model's ``default_lr`` in ``cfg`` itself, so that
    metrics.json, the loggers and a resume see the number the run used."""
    if OmegaConf.select(cfg, "optimizer.lr", default=0) is not None:
        return
    lr = model_default_lr(model_factory)
    if lr is None:
        raise ConfigError(
            f"optimizer.lr is null and model {chosen_option(cfg, 'model')!r} declares no "
            "default_lr: pass optimizer.lr=<float>"
        )
    cfg.optimizer.lr = lr


def build_net(
    cfg: DictConfig, datamodule: pl.LightningDataModule, model_factory: Any, model_options: Path
) -> nn.Module:
    """The network, built for the data's shape (known before its data is loaded), once the
    model is known to read what the data gives (:mod:`adaptls.run.model_fits_data`)."""
    check_model_fits_data(
        datamodule,
        model_factory,
        data=chosen_option(cfg, "data"),
        model=chosen_option(cfg, "model"),
        model_options=model_options,
    )
    return call_partial(
        cfg,
        "model",
        model_factory,
        input_shape=datamodule.input_shape,
        num_classes=datamodule.num_classes,
    )


def check_optimization(
    cfg: DictConfig, net: nn.Module, optimizer: Any, scheduler: Any | None
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Build a throwaway optimizer on ``net``'s parameters and the scheduler on it; return
    that trial scheduler (None without one), whose schedule a resume is checked against."""
    trial = call_partial(cfg, "optimizer", optimizer, net.parameters())
    return None if scheduler is None else call_partial(cfg, "scheduler", scheduler, trial)


def check_mix(cfg: DictConfig, mix: Any | None, datamodule: pl.LightningDataModule) -> None:
    """The mixing augmentation applies to the data's inputs (images mix, token ids do not);
    the line names both options: the mixer and the data it refuses."""
    if mix is None:
        return
    try:
        mix.check_input_shape(
            tuple(datamodule.input_shape), token_ids=getattr(datamodule, "token_ids", False)
        )
    except ValueError as err:
        raise ConfigError(
            f"mix={chosen_option(cfg, 'mix')} cannot mix data={chosen_option(cfg, 'data')}"
            f" (inputs {tuple(datamodule.input_shape)}): {err}"
        ) from None


def check_accelerator(cfg: DictConfig) -> None:
    """A GPU trainer on a machine or a torch build without CUDA: say which, and what to do
    (Lightning's own error, "No supported gpu backend found!", says neither)."""
    if str(cfg.trainer.get("accelerator")) not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    why = (
        f"this torch ({torch.__version__}) is a CPU build"
        if torch.version.cuda is None
        else "no CUDA device is visible"
    )
    raise ConfigError(
        f"trainer={chosen_option(cfg, 'trainer')} (trainer.accelerator="
        f"{cfg.trainer.accelerator}) needs a CUDA GPU, but {why}: on a GPU machine set up a "
        "CUDA build of torch (make setup TORCH=..., see the README), or train on the CPU "
        "(trainer=cpu, trainer=ddp_cpu)"
    )


def check_eval_checkpoint(cfg: DictConfig) -> None:
    """``eval_checkpoint`` is one of :data:`EVAL_CHECKPOINTS`, and ``best`` has a callback
    that saves the best checkpoint."""
    if cfg.eval_checkpoint not in EVAL_CHECKPOINTS:
        raise ConfigError(
            f"eval_checkpoint must be one of {', '.join(EVAL_CHECKPOINTS)}; "
            f"got {cfg.eval_checkpoint!r}"
        )
    if cfg.eval_checkpoint == "best" and not (cfg.get("callbacks") or {}).get("model_checkpoint"):
        raise ConfigError(
            "eval_checkpoint=best needs callbacks.model_checkpoint (it saves the best "
            "checkpoint); set it, or evaluate the last epoch (eval_checkpoint=last)"
        )


def check_run_length(strategy: Strategy, trainer: pl.Trainer) -> None:
    """A schedule that needs the run's length fails here, not after an epoch (asked of
    every strategy of the tree, a composed base included)."""
    try:
        StrategyDriver(strategy).check_run_length(trainer.max_epochs)
    except ValueError as err:
        raise ConfigError(f"smoothing: {err}") from None


def check_processes(cfg: DictConfig, strategy: Strategy, trainer: pl.Trainer) -> None:
    """A strategy that cannot train on several processes (``distributed_unsupported``) is
    refused by a trainer that runs several: here rather than at the strategy's first epoch
    end, a whole epoch later."""
    unsupported = StrategyDriver(strategy).distributed_unsupported
    if unsupported is not None and trainer.world_size > 1:
        raise ConfigError(
            f"smoothing={chosen_option(cfg, 'smoothing')} cannot train on {trainer.world_size} "
            f"processes (trainer={chosen_option(cfg, 'trainer')}): {unsupported}; "
            "or train on one process (trainer=cpu or trainer=gpu)"
        )


def check_resume(
    cfg: DictConfig,
    trainer: pl.Trainer,
    trial_schedule: torch.optim.lr_scheduler.LRScheduler | None,
) -> None:
    """``ckpt_path``: ``last`` without a last checkpoint is said in one line (the run
    starts from scratch); a local file must exist, be written by as many processes as
    this run has (each rank resumes its own RNG states and sums) and hold this run's
    schedule (a URL is fit's to check)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = last_checkpoint(trainer)
        if ckpt_path is None and trainer.is_global_zero:
            _say_no_last_checkpoint(trainer)
    if ckpt_path is None or "://" in str(ckpt_path):
        return
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path: no checkpoint file at {ckpt_path!r} ({Path(ckpt_path).resolve()}); "
            "give an existing .ckpt file, last (this run's checkpoints/last.ckpt) or null"
        )
    checkpoint = _read_checkpoint(cfg, ckpt_path)
    _check_resume_processes(cfg, ckpt_path, checkpoint, trainer)
    if trial_schedule is not None:
        check_resume_schedule(cfg, ckpt_path, checkpoint, trial_schedule)


def _read_checkpoint(cfg: DictConfig, ckpt_path: str | Path) -> dict[str, Any]:
    """The checkpoint, memory-mapped (the weights are not read here). ``weights_only=False``
    is the trust ``fit`` gives the same file a moment later (a scheduler's state holds e.g.
    a ``Counter`` of milestones)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # torch.load raises several kinds for a file that is not one
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"ckpt_path={cfg.get('ckpt_path')}: {ckpt_path} is not a checkpoint torch.save "
            f"wrote ({type(err).__name__}: {first})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"ckpt_path={cfg.get('ckpt_path')}: {ckpt_path} holds a "
            f"{type(checkpoint).__name__}, not a Lightning checkpoint (a dict)"
        )
    return checkpoint


def _check_resume_processes(
    cfg: DictConfig, ckpt_path: str | Path, checkpoint: dict[str, Any], trainer: pl.Trainer
) -> None:
    saved = checkpoint_world_size(checkpoint)
    if saved is not None and saved != trainer.world_size:
        raise ConfigError(
            f"ckpt_path={cfg.get('ckpt_path')}: {ckpt_path} was written by {saved} process(es) "
            f"and this run has {trainer.world_size} (trainer={chosen_option(cfg, 'trainer')}); "
            "each resumes its own RNG states and sums: resume with "
            f"{saved} process(es) (trainer.devices x trainer.num_nodes)"
        )


def _say_no_last_checkpoint(trainer: pl.Trainer) -> None:
    """One line for ``ckpt_path=last`` without a last checkpoint, with the path looked at."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    where = (
        Path(dirpath) / "last.ckpt"
        if dirpath
        else "the checkpoint callback's folder (callbacks.last_checkpoint sets none)"
    )
    log.warning("ckpt_path=last: no last.ckpt found at %s; the run starts from scratch", where)
