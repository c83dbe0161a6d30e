"""Train, test and report one run: ``python -m adaptls.train`` or ``adaptls-train``.

    python -m adaptls.train smoothing=class_frequency smoothing.epsilon_head=0.4 data=mnist1d_lt
    python -m adaptls.train -m smoothing=none,uniform,confidence seed=0,1,2

Every component is built (and so validated) before anything is trained; a bad value
stops the run with the offending key in the message. The run ends with ``metrics.json``
in its output directory (validation and test metrics of the best checkpoint, the resolved
config and the strategy's summary) and returns ``optimized_metric`` for sweepers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger

from adaptls.config import ConfigError, instantiate_group
from adaptls.module import SmoothingClassifier
from adaptls.report import print_table, write_metrics

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, SmoothingClassifier, pl.Trainer]:
    """Instantiate every component; configuration errors surface here, before training."""
    strategy = instantiate_group(cfg, "smoothing")
    datamodule = instantiate_group(cfg, "data")
    model_factory = instantiate_group(cfg, "model")
    optimizer = instantiate_group(cfg, "optimizer")
    scheduler = instantiate_group(cfg, "scheduler") if cfg.get("scheduler") else None
    loggers = [instantiate_group(cfg, f"logger.{name}") for name in cfg.get("logger") or {}]
    callbacks = [
        instantiate_group(cfg, f"callbacks.{name}")
        for name, spec in (cfg.get("callbacks") or {}).items()
        # LearningRateMonitor refuses to run without a logger.
        if spec is not None and (loggers or name != "lr_monitor")
    ]
    trainer = instantiate_group(cfg, "trainer", logger=loggers or False, callbacks=callbacks)

    datamodule.prepare_data()
    datamodule.setup("fit")
    net = model_factory(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    module = SmoothingClassifier(
        net,
        strategy,
        optimizer,
        scheduler,
        num_classes=datamodule.num_classes,
        class_counts=datamodule.class_counts,
        n_bins=cfg.n_bins,
    )
    return datamodule, module, trainer


def train(cfg: DictConfig) -> float | None:
    """Run fit, select the best validation checkpoint, test it, write ``metrics.json``."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(_resolved(cfg))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = _best_checkpoint(trainer)
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]

    if trainer.is_global_zero:
        output_dir = Path(cfg.paths.output_dir)
        summary = module.strategy.summary()
        write_metrics(output_dir / "metrics.json", val, test, _resolved(cfg), summary, best)
        print_table(
            val, test, title=f"{cfg.smoothing._target_.rsplit('.', 1)[-1]} (seed {cfg.seed})"
        )
    if trainer.is_global_zero:
        _finish_wandb(trainer, {**val, **test})
    return val.get(cfg.optimized_metric)


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path or None


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _finish_wandb(trainer: pl.Trainer, final: dict[str, float]) -> None:
    """Record the final metrics and close the W&B run, so the next multirun job starts its own."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(final)
            logger.experiment.finish()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as err:
        log.error("invalid configuration: %s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
