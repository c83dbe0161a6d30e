"""Every option of every config group composes from conf/train.yaml and instantiates.

Options are discovered by listing conf/<group>/*.yaml, so a new yaml is covered as soon as
it exists. Downloadable datasets are only constructed (no network); GPU trainers are built
only where the hardware has the devices they ask for.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.strategies import DDPStrategy

from adaptls.models.inputs import model_class
from adaptls.run import preflight
from adaptls.run.config import ConfigError, instantiate_group
from adaptls.smoothing import Strategy, StrategyDriver
from adaptls.train import CONFIG_DIR

CONF = Path(CONFIG_DIR)
# Models are built with the facts of a dataset they are made for; others use the default.
MODEL_DATA = {
    "mlp": "digits",
    "cnn1d": "mnist1d",
    "resnet20": "cifar10",
    "resnet32": "cifar100",
    "text_cnn": "text_cls",
    "transformer_lm": "text_lm",
    "transformer_mt": "text_mt",
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def default_choices() -> dict[str, str | None]:
    """Group -> chosen option of the default composition (hydra's own groups included)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra.runtime.output_dir=."], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


# Groups whose options the tests below build one by one.
BUILT = {"smoothing", "data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks"}
BUILT |= {"paths", "hydra", "experiment"}


def other_options() -> list[tuple[str, str]]:
    """(group, option) for every yaml of the other groups the defaults list selects
    (hydra's launcher, the hyperparameter search, and any group added later)."""
    groups = {key.split("@", 1)[0] for key in default_choices()} - BUILT
    return [(g, o) for g in sorted(groups) if (CONF / g).is_dir() for o in options(g)]


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


# ---------------------------------------------------------------------------- composition
@pytest.mark.parametrize(("group", "option"), other_options())
def test_every_option_of_the_other_groups_composes(compose_train, output_dir, group, option):
    cfg = compose_train(f"{group}={option}", output_dir=output_dir, hydra=True)
    assert cfg.hydra.runtime.choices[group] == option
    # The task config resolves: no dangling interpolation.
    OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )


def test_the_named_groups_have_options():
    for group in ("smoothing", "data", "model", "optimizer", "scheduler", "trainer", "logger"):
        assert options(group), f"conf/{group} has no options"
    assert {"none", "uniform", "confidence", "class_frequency", "online"} <= set(
        options("smoothing")
    )
    assert {"cpu", "gpu", "ddp", "ddp_cpu"} <= set(options("trainer"))
    assert {"wandb", "csv", "none"} <= set(options("logger"))


@pytest.mark.parametrize("search", options("hparams_search"))
@pytest.mark.parametrize("smoothing", options("smoothing"))
def test_every_search_has_a_space_of_real_keys_for_every_strategy(
    compose_train, output_dir, search, smoothing
):
    cfg = compose_train(
        f"hparams_search={search}", f"smoothing={smoothing}", output_dir=output_dir, hydra=True
    )
    params = cfg.hydra.sweeper.params
    assert params, f"hparams_search={search} has no search space for smoothing={smoothing}"
    absent = object()
    for key in params:
        assert OmegaConf.select(cfg, key, default=absent) is not absent, f"{key} is not a key"


# ---------------------------------------------------------------------------- instantiation
@pytest.mark.parametrize("option", options("smoothing"))
def test_smoothing_option_builds_its_strategy(compose_train, output_dir, option):
    cfg = compose_train(f"smoothing={option}", output_dir=output_dir)
    strategy = instantiate_group(cfg, "smoothing")
    assert isinstance(strategy, Strategy)  # a soft-target strategy or a criterion
    assert strategy.name == option  # Hydra name = the strategy's own name
    StrategyDriver(strategy).setup(num_classes=4, class_counts=[40, 20, 10, 5])
    logits = torch.randn(8, 4, requires_grad=True)
    loss = strategy(logits, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("option", options("data"))
def test_data_option_builds_its_datamodule(compose_train, output_dir, option):
    cfg = compose_train(f"data={option}", "seed=3", output_dir=output_dir)
    datamodule = instantiate_group(cfg, "data")
    assert isinstance(datamodule, pl.LightningDataModule)
    assert datamodule.seed == 3  # ${seed} reached the datamodule
    assert datamodule.num_classes >= 2 and datamodule.input_shape
    if hasattr(datamodule, "download"):  # a dataset that must be fetched: construct only
        assert Path(datamodule.data_dir) == Path(cfg.paths.data_dir)
        return
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, y, _ = next(iter(datamodule.train_dataloader()))
    if datamodule.token_level:  # a sequence batch may be cut to its longest row
        assert x.shape[1:-1] == datamodule.input_shape[:-1]
        assert x.shape[-1] <= datamodule.input_shape[-1]
    else:
        assert tuple(x.shape[1:]) == tuple(datamodule.input_shape)
    y = y[y != -100]  # padding of token targets
    assert int(y.min()) >= 0 and int(y.max()) < datamodule.num_classes
    assert len(datamodule.class_counts) == datamodule.num_classes
    assert sum(datamodule.class_counts) == datamodule.num_train


@pytest.mark.parametrize("option", options("model"))
def test_model_option_builds_from_the_datamodule_facts(compose_train, output_dir, option):
    data = MODEL_DATA.get(option, default_choices()["data"])
    cfg = compose_train(f"model={option}", f"data={data}", output_dir=output_dir)
    datamodule = instantiate_group(cfg, "data")  # shape and classes are known unloaded
    net = instantiate_group(cfg, "model")(
        input_shape=datamodule.input_shape, num_classes=datamodule.num_classes
    )
    shape, k = (2, *datamodule.input_shape), datamodule.num_classes
    vocab = getattr(datamodule, "vocab_size", None)  # token ids for models of text
    logits = net(torch.randint(1, vocab, shape) if vocab else torch.randn(shape))
    # a language model predicts at every position: (B, T) token ids -> (B, T, K); a
    # translation model at every target position: (B, 2, L) rows -> (B, L, K)
    expected = (2, shape[-1], k) if getattr(datamodule, "token_level", False) else (2, k)
    assert logits.shape == expected


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_learning_rate_is_a_number_for_every_model(
    compose_train, output_dir, option, model
):
    """``lr: null`` (Adam, AdamW) is the model's declared default_lr, written into the config
    itself (metrics.json and the loggers record the number); a set lr is kept as it is."""
    cfg = compose_train(f"optimizer={option}", f"model={model}", output_dir=output_dir)
    composed = cfg.optimizer.lr
    factory = instantiate_group(cfg, "model")
    preflight.resolve_default_lr(cfg, factory)
    expected = model_class(factory).default_lr if composed is None else composed
    assert isinstance(cfg.optimizer.lr, float) and cfg.optimizer.lr == expected > 0


def test_a_null_learning_rate_without_a_model_default_is_refused(compose_train, output_dir):
    cfg = compose_train("optimizer=adamw", output_dir=output_dir)
    assert cfg.optimizer.lr is None
    with pytest.raises(
        ConfigError, match=r"optimizer.lr is null and model .* declares no default_lr"
    ):
        preflight.resolve_default_lr(cfg, lambda input_shape, num_classes: torch.nn.Identity())


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_option_builds_and_steps(compose_train, output_dir, option):
    cfg = compose_train(f"optimizer={option}", output_dir=output_dir)
    preflight.resolve_default_lr(cfg, instantiate_group(cfg, "model"))
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = instantiate_group(cfg, "optimizer")([weight])
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    weight.sum().backward()
    optimizer.step()
    assert not torch.equal(weight.detach(), torch.ones(3))


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_option_builds_on_an_optimizer(compose_train, output_dir, option):
    cfg = compose_train(f"scheduler={option}", output_dir=output_dir)
    if not cfg.get("scheduler"):  # `none`: a constant learning rate, no scheduler at all
        assert option == "none"
        return
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    scheduler = instantiate_group(cfg, "scheduler")(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    optimizer.step()
    scheduler.step()
    assert 0 <= optimizer.param_groups[0]["lr"] <= 0.1


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_option_builds_where_the_hardware_allows(compose_train, output_dir, option):
    cfg = compose_train(f"trainer={option}", output_dir=output_dir)
    if cfg.trainer.accelerator == "gpu":
        needed, found = cfg.trainer.devices * cfg.trainer.get("num_nodes", 1), 0
        if torch.cuda.is_available():
            found = torch.cuda.device_count()
        if found < needed:
            pytest.skip(f"trainer={option} needs {needed} CUDA device(s), this machine has {found}")
    trainer = instantiate_group(cfg, "trainer", logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert trainer.num_devices == cfg.trainer.devices
    assert isinstance(trainer.strategy, DDPStrategy) == (cfg.trainer.get("strategy") == "ddp")
    assert Path(trainer.default_root_dir) == output_dir


@pytest.mark.parametrize("option", options("logger"))
def test_logger_option_builds_its_loggers(compose_train, output_dir, option):
    cfg = compose_train(f"logger={option}", output_dir=output_dir)
    names = list(cfg.get("logger") or {})
    if option == "none":
        assert names == []
    loggers = [instantiate_group(cfg, f"logger.{name}") for name in names]
    for logger in loggers:
        assert isinstance(logger, pl.loggers.Logger)
        assert Path(logger.save_dir) == output_dir
        if isinstance(logger, WandbLogger):
            assert cfg.logger.wandb.offline is True  # offline unless asked
            assert cfg.logger.wandb.group is None  # grouped only in a multirun
    assert not output_dir.exists()  # building a logger writes nothing
    if option in ("wandb", "csv"):
        assert any(isinstance(lg, (WandbLogger, CSVLogger)) for lg in loggers)


@pytest.mark.parametrize("option", options("callbacks"))
def test_callbacks_option_builds_every_callback(compose_train, output_dir, option):
    cfg = compose_train(f"callbacks={option}", output_dir=output_dir)
    for name, spec in cfg.callbacks.items():
        if spec is not None:
            assert isinstance(instantiate(spec), pl.Callback), name
    checkpoint = cfg.callbacks.get("model_checkpoint")
    if checkpoint is not None:
        assert checkpoint.monitor == cfg.optimized_metric
        assert Path(checkpoint.dirpath).parent == output_dir


@pytest.mark.parametrize("option", options("paths"))
def test_paths_option_points_at_the_run_and_the_cache(compose_train, output_dir, option):
    cfg = compose_train(f"paths={option}", output_dir=output_dir)
    assert Path(cfg.paths.output_dir) == output_dir
    assert cfg.paths.data_dir == os.environ["ADAPTLS_DATA_DIR"]  # the cache is relocatable


@pytest.mark.parametrize("option", options("hydra"))
def test_hydra_option_separates_runs_and_sweeps(compose_train, output_dir, option):
    cfg = compose_train(f"hydra={option}", output_dir=output_dir, hydra=True)
    assert cfg.hydra.run.dir != cfg.hydra.sweep.dir
    assert "${hydra.job.num}" in OmegaConf.to_container(cfg.hydra.sweep)["subdir"]
    assert cfg.hydra.job.chdir is False  # relative paths in overrides keep meaning


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_option_instantiates(compose_train, output_dir, option):
    cfg = compose_train(f"experiment={option}", output_dir=output_dir)
    for group in ("smoothing", "data", "optimizer"):
        assert instantiate_group(cfg, group) is not None
