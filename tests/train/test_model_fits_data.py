"""Every conf/data option with every conf/model option, composed by Hydra: the pairs whose
model reads what the data gives pass every check of ``build``; the others stop there with
one line naming both options and the models that fit, before any data is loaded."""

from __future__ import annotations

import functools
from pathlib import Path

import hydra
import pytest
import torch

from adaptls.models.inputs import ModelInputs, model_inputs
from adaptls.run.config import ConfigError, instantiate_group
from adaptls.run.model_fits_data import check_model_fits_data
from adaptls.train import CONFIG_DIR, build

DATA = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
IMAGES = frozenset({"mlp", "resnet20", "resnet32"})
FEATURES = frozenset({"mlp", "cnn1d"})
# The models each data option takes: written out, so that a wrong declaration shows.
FITS = {
    **dict.fromkeys(["cifar10", "cifar10_lt", "cifar100", "cifar100_lt"], IMAGES),
    **dict.fromkeys(["mnist1d", "mnist1d_lt"], FEATURES),  # series (1, 40)
    **dict.fromkeys(["digits", "synthetic"], FEATURES),  # vectors (one channel for cnn1d)
    **dict.fromkeys(
        ["text_cls", "text_cls_lt"], frozenset({"text_cnn"})
    ),  # token ids, a label per text
    "text_lm": frozenset({"transformer_lm"}),  # token ids, the next token at every position
    "text_mt": frozenset({"transformer_mt"}),  # source and decoder-input rows, a target per token
}
PAIRS = [(data, model) for data in DATA for model in MODELS]


class WouldLoadData(Exception):
    """Raised in place of loading data: every check of ``build`` came before it."""


@pytest.fixture
def no_loading(monkeypatch):
    """``compose(data)``-ready: the chosen datamodule class loads nothing, it raises."""

    def refuse(cfg):
        cls = hydra.utils.get_class(cfg.data._target_)
        for hook in ("prepare_data", "setup"):
            monkeypatch.setattr(cls, hook, _raise_would_load)
        return cfg

    return refuse


def _raise_would_load(*args, **kwargs):
    raise WouldLoadData


def test_every_data_option_is_listed():
    assert set(DATA) == set(FITS)
    assert set().union(*FITS.values()) <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_declares_what_it_reads(compose_train, tmp_path, model):
    cfg = compose_train(f"model={model}", "logger=none", output_dir=tmp_path)
    factory = instantiate_group(cfg, "model")
    assert isinstance(factory, functools.partial)  # resnet20: a function, via its annotation
    assert isinstance(model_inputs(factory), ModelInputs)


@pytest.mark.parametrize(("data", "model"), PAIRS)
def test_a_pair_builds_or_stops_before_loading_data(
    compose_train, tmp_path, no_loading, data, model
):
    cfg = no_loading(
        compose_train(f"data={data}", f"model={model}", "logger=none", output_dir=tmp_path)
    )
    if model in FITS[data]:
        with pytest.raises(WouldLoadData):  # every check passed; loading is next
            build(cfg)
        return
    with pytest.raises(ConfigError) as error:
        build(cfg)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"model={model} reads ")
    assert f"but data={data} gives " in message
    allowed = ", ".join(f"model={name}" for name in sorted(FITS[data]))
    assert message.endswith(f"models that take data={data}: {allowed}")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(("data", "model"), PAIRS)
def test_the_declarations_say_what_the_models_do(compose_train, tmp_path, data, model):
    """Built with the data's facts and given a batch of its kind, a model that fits returns
    logits for its targets -- (B, K), or (B, T, K) per token -- and one that does not fits
    nothing: it refuses the shape, fails on the batch or returns logits of the wrong layout."""
    cfg = compose_train(f"data={data}", f"model={model}", "logger=none", output_dir=tmp_path)
    datamodule = instantiate_group(cfg, "data")
    shape, k = tuple(datamodule.input_shape), datamodule.num_classes
    if datamodule.token_ids:
        batch = torch.randint(1, 100, (2, *shape))
    else:
        batch = torch.randn(2, *shape)
    # per token: the sequence is the input's last dimension ((T,) text, (2, L) translation)
    expected = (2, shape[-1], k) if getattr(datamodule, "token_level", False) else (2, k)
    try:
        net = instantiate_group(cfg, "model")(input_shape=shape, num_classes=k)
        with torch.no_grad():
            layout = tuple(net.eval()(batch).shape)
    except (ValueError, RuntimeError, IndexError):  # IndexError: ids past its vocabulary
        layout = None
    assert (layout == expected) == (model in FITS[data]), (layout, expected)


def test_a_model_that_declares_nothing_is_not_checked(compose_train, tmp_path):
    """A model of the user's own without ``inputs`` is left to its own checks."""
    cfg = compose_train("data=text_lm", "logger=none", output_dir=tmp_path)
    datamodule = instantiate_group(cfg, "data")
    undeclared = functools.partial(torch.nn.Linear)
    assert model_inputs(undeclared) is None
    check_model_fits_data(
        datamodule, undeclared, data="text_lm", model="mine", model_options=tmp_path
    )
