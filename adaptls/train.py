"""Train, test and report one run: ``python -m adaptls.train`` or ``adaptls-train``.

    python -m adaptls.train smoothing=class_frequency smoothing.epsilon_head=0.4 data=mnist1d_lt
    python -m adaptls.train -m smoothing=none,uniform,confidence seed=0,1,2

Every component is built (and so validated) before anything is trained; a bad value
stops the run with the offending key in the message. The run ends with ``metrics.json``
in its output directory (validation and test metrics of the evaluated checkpoint -- the
last epoch by default, ``eval_checkpoint=best`` for the best by ``optimized_metric`` --
the resolved config and the strategy's summary) and returns ``optimized_metric`` for
sweepers.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from adaptls.data.download import ChecksumError, DownloadError
from adaptls.module import SmoothingClassifier
from adaptls.run import preflight
from adaptls.run.config import ConfigError, check_search_space, instantiate_group
from adaptls.run.library_shims import drop_wandb_anonymous_setting, last_checkpoint
from adaptls.run.report import print_calibration_verdict, print_table, write_metrics
from adaptls.run.stop_request import STOP_REQUEST
from adaptls.run.wandb_dashboard import final_summary, start_dashboard

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# Where the deprecation warnings that `_quiet_known_noise` silences come from.
LIGHTNING_MODULES = r"(pytorch_lightning|lightning_fabric)(\.|$)"
log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, SmoothingClassifier, pl.Trainer]:
    """Instantiate every component, run the preflight checks, construct the module.

    Everything a config sets is validated before anything is loaded or written
    (:mod:`adaptls.run.preflight`): the model must read what the data gives, the partials
    (model, optimizer, scheduler, mix) are called once here, the model with the data's
    shape, a throwaway optimizer and scheduler on its parameters; then the trainer must fit
    the machine, the strategy and the evaluation rule, and a resumed checkpoint the run.
    """
    check_search_space()
    strategy = instantiate_group(cfg, "smoothing")
    datamodule = instantiate_group(cfg, "data")
    model_factory = instantiate_group(cfg, "model")
    preflight.resolve_default_lr(cfg, model_factory)
    optimizer = instantiate_group(cfg, "optimizer")
    scheduler = instantiate_group(cfg, "scheduler") if cfg.get("scheduler") else None
    mix = instantiate_group(cfg, "mix") if cfg.get("mix") else None
    # Built, not started: a logger's run begins in `train`, once everything is validated.
    loggers = [instantiate_group(cfg, f"logger.{name}") for name in cfg.get("logger") or {}]
    for logger in loggers:
        drop_wandb_anonymous_setting(logger)

    net = preflight.build_net(cfg, datamodule, model_factory, Path(CONFIG_DIR) / "model")
    trial_schedule = preflight.check_optimization(cfg, net, optimizer, scheduler)
    preflight.check_mix(cfg, mix, datamodule)
    preflight.check_accelerator(cfg)
    trainer = build_trainer(cfg, loggers)
    preflight.check_eval_checkpoint(cfg)
    preflight.check_run_length(strategy, trainer)
    preflight.check_processes(cfg, strategy, trainer)
    preflight.check_resume(cfg, trainer, trial_schedule)

    datamodule.prepare_data()
    datamodule.setup("fit")
    module = SmoothingClassifier(
        net,
        strategy,
        optimizer,
        scheduler,
        num_classes=datamodule.num_classes,
        class_counts=datamodule.class_counts,
        n_bins=cfg.n_bins,
        mix=mix,
        token_level=getattr(datamodule, "token_level", False),
    )
    return datamodule, module, trainer


def build_trainer(cfg: DictConfig, loggers: list[Logger]) -> pl.Trainer:
    """The configured trainer and callbacks, logging to ``loggers``."""
    show_progress = cfg.trainer.get("enable_progress_bar", True)
    callbacks = [
        instantiate_group(cfg, f"callbacks.{name}")
        for name, spec in (cfg.get("callbacks") or {}).items()
        # LearningRateMonitor refuses to run without a logger.
        if spec is not None and (loggers or name != "lr_monitor")
    ]
    # Lightning refuses a progress-bar callback when the bar is switched off: drop it, so
    # `trainer.enable_progress_bar=false` is all it takes.
    callbacks = [c for c in callbacks if show_progress or not isinstance(c, ProgressBar)]
    return instantiate_group(cfg, "trainer", logger=loggers or False, callbacks=callbacks)


def train(cfg: DictConfig) -> float | None:
    """Run fit, validate and test the evaluated weights, write ``metrics.json``.

    The evaluated weights are the same rule for every strategy: the last epoch's
    (``eval_checkpoint=last``, the default) or the best checkpoint by
    ``cfg.optimized_metric`` (``best``). Evaluation never moves a strategy's state.
    Returns the validation value of ``cfg.optimized_metric`` for those weights. The
    W&B run, if any, is finished on the way out, failed or not, so that the next multirun
    job opens its own run instead of writing into this one.
    """
    _quiet_known_noise()
    # SIGTERM: every process stops at an agreed step (see CheckpointOnInterrupt)
    with STOP_REQUEST.handling():
        return _train(cfg)


def _train(cfg: DictConfig) -> float | None:
    _set_cpu_threads(cfg.get("cpu_threads"))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    final: dict[str, float] | None = None
    started: list[Logger] = []
    try:
        started = [logger for logger in trainer.loggers if _started(logger)]
        if len(started) < len(trainer.loggers):  # the same run without the dropped loggers
            trainer = build_trainer(cfg, started)
        for logger in trainer.loggers:
            logger.log_hyperparams(resolved)
        if trainer.is_global_zero:  # other ranks hold W&B's stand-in run
            start_dashboard(trainer.loggers, module.strategy)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from(cfg, trainer))
        evaluated = _evaluated(trainer, cfg.eval_checkpoint)
        # The best checkpoint is loaded by these calls; the last epoch's weights are the
        # module's own (ckpt_path None).
        ckpt = evaluated["path"] if cfg.eval_checkpoint == "best" else None
        val = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
        test = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
        if trainer.is_global_zero:
            output_dir = Path(cfg.paths.output_dir)
            summary = module.strategy.summary()
            write_metrics(
                output_dir / "metrics.json",
                val,
                test,
                resolved,
                summary,
                evaluated,
                sections=callback_records(trainer),
            )
            log.info("metrics written to %s", output_dir / "metrics.json")
            name = cfg.smoothing._target_.rsplit(".", 1)[-1]
            title = (
                f"{name} (seed {cfg.seed}, {cfg.eval_checkpoint} checkpoint: "
                f"epoch {evaluated['epoch']})"
            )
        final = final_summary(val, test)
    finally:
        if trainer.is_global_zero:
            _finish_wandb(started, final)
    if trainer.is_global_zero:  # last, below W&B's own run summary, where a user looks
        print_table(val, test, title=title)
        print_calibration_verdict(test)
        print(f"Run directory (metrics.json, checkpoints, plots): {cfg.paths.output_dir}\n")
    return val.get(cfg.optimized_metric)


def callback_records(trainer: pl.Trainer) -> dict[str, Any]:
    """Sections of ``metrics.json`` that callbacks keep: ``{name: record}`` of each callback
    with a ``record()`` method that returns a non-empty record (the translation scores'
    signatures and samples), named after the callback's class."""
    sections = {}
    for callback in trainer.callbacks:
        record = getattr(callback, "record", None)
        value = record() if callable(record) else None
        if value:
            sections[type(callback).__name__] = value
    return sections


def resume_from(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """The ``ckpt_path`` to give ``trainer.fit``: ``cfg.ckpt_path``, except ``last`` with
    no last checkpoint yet, which becomes None (train from scratch).

    Training from scratch there is kept on purpose (a requeued cluster job passes
    ``ckpt_path=last`` from its first start on); ``build`` says so in one line (:func:`adaptls.run.preflight.check_resume`). Passing
    ``"last"`` on would make Lightning add its own warning, whose hint (set
    ``save_last=True``) is wrong here: our checkpoint callback sets it. Every DDP rank
    decides by looking itself, as Lightning's own lookup does: the other ranks run this
    before they join the process group, so before rank 0 can have saved anything.
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and last_checkpoint(trainer) is None:  # fit's own lookup
        return None
    return ckpt_path


def _set_cpu_threads(threads: Any) -> None:
    """Use ``threads`` CPU threads in this process and in the ones it launches (DDP ranks
    inherit ``OMP_NUM_THREADS``, which Lightning then leaves alone); ``None``: torch's."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"cpu_threads must be an int >= 1 or null, got {threads!r}")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _evaluated(trainer: pl.Trainer, rule: str) -> dict[str, Any]:
    """Which weights are evaluated: ``{"rule", "path", "epoch", "step"}`` (0-based epoch of
    the last completed epoch, optimizer steps taken)."""
    if rule == "best":
        callback = trainer.checkpoint_callback
        path = (getattr(callback, "best_model_path", "") if callback is not None else "") or None
    else:  # the file `ckpt_path=last` would resume from
        last = last_checkpoint(trainer)
        path = None if last is None else str(last)
    if rule == "best" and path is None:
        raise RuntimeError(
            "eval_checkpoint=best needs the model_checkpoint callback to have saved a best "
            "checkpoint (is callbacks.model_checkpoint set, with a monitor?)"
        )
    if rule == "best":
        saved = torch.load(path, map_location="cpu", weights_only=False)
        epoch, step = int(saved["epoch"]), int(saved["global_step"])
    else:  # the module's own weights; fit has counted past its last complete epoch
        epoch, step = trainer.current_epoch - 1, trainer.global_step
    return {"rule": rule, "path": path, "epoch": epoch, "step": step}


def _finish_wandb(started: list[Logger], final: dict[str, float] | None) -> None:
    """Record the final metrics and close the W&B runs that were started (``final=None``:
    the run failed)."""
    for logger in started:
        if isinstance(logger, WandbLogger):
            if final is not None:
                logger.experiment.summary.update(final)  # test and evaluated/val figures
            logger.experiment.finish(exit_code=0 if final is not None else 1)


def _started(logger: Any) -> bool:
    """Start a logger's run now; one that cannot start (W&B with a bad mode, an unwritable
    directory, ...) is dropped with one warning, and the run goes on without it."""
    try:
        logger.experiment  # noqa: B018 - creating the run is the point
    except Exception as err:
        log.warning(
            "%s could not start, training continues without it "
            "(metrics.json is still written): %s: %s",
            type(logger).__name__,
            type(err).__name__,
            err,
        )
        return False
    return True


def _quiet_known_noise() -> None:
    """Silence the deprecation warnings that torch raises inside Lightning's own calls
    (pytree's ``LeafSpec``, ``torch.distributed.nn`` collectives): nothing the user can
    change. Chosen by category and by the module they are raised from, never by the text of
    a message (which changes between releases); Lightning's advisories
    (``PossibleUserWarning``) and user warnings stay visible.
    """
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIGHTNING_MODULES)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as err:
        log.error("invalid configuration: %s", err)
        raise SystemExit(2) from None
    except (DownloadError, ChecksumError) as err:
        # The message says it all (URL, error, where to put the file by hand): no traceback.
        log.error("%s", err)
        raise SystemExit(1) from None
    except SIGTERMException:
        # Every process stopped at the same step and CheckpointOnInterrupt has saved
        # last.ckpt; a terminated run is not a success. A launcher's own signal (submitit's
        # time limit) goes to its handler now, which requeues the job.
        STOP_REQUEST.hand_on()
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
