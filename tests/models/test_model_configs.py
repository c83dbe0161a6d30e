"""conf/model/*.yaml: partial factories that the training code completes with data facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adaptls.models import CNN1D, MLP, ResNet, TextCNN

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
CASES = {
    "mlp": (MLP, (1, 40), {"hidden", "dropout"}),
    "cnn1d": (CNN1D, (1, 40), {"channels", "dropout"}),
    "resnet20": (ResNet, (3, 32, 32), {"dropout"}),
    "resnet32": (ResNet, (3, 32, 32), {"dropout"}),
    "text_cnn": (
        TextCNN,
        (16,),
        {"vocab_size", "width", "channels", "kernel_sizes", "dropout", "pooling"},
    ),
}
# Models of token ids take their vocabulary from the data config: ${data.vocab_size}.
DATA = {"text_cnn": {"data": {"vocab_size": 300}}}


def _load(name):
    cfg = OmegaConf.merge(DATA.get(name, {}), {"model": OmegaConf.load(CONF / f"{name}.yaml")})
    return cfg.model


def _batch(name, shape):
    return torch.randint(1, 300, (2, *shape)) if name in DATA else torch.randn(2, *shape)


def test_every_yaml_is_covered():
    # the transformers take token ids, not float batches: tests/models/test_transformer_lm.py
    # and tests/models/test_transformer_mt.py
    assert {p.stem for p in CONF.glob("*.yaml")} == set(CASES) | {
        "transformer_lm",
        "transformer_mt",
    }


@pytest.mark.parametrize("name", list(CASES))
def test_yaml_builds_a_model_from_data_facts(name):
    cls, shape, keys = CASES[name]
    cfg = _load(name)
    assert cfg._partial_ is True
    assert set(cfg) - {"_target_", "_partial_"} == keys
    model = instantiate(cfg)(input_shape=shape, num_classes=10)
    assert isinstance(model, cls)
    assert model(_batch(name, shape)).shape == (2, 10)


def test_text_cnn_takes_its_vocabulary_from_the_data():
    model = instantiate(_load("text_cnn"))(input_shape=(16,), num_classes=3)
    assert model.embedding.num_embeddings == 300
    alone = OmegaConf.load(CONF / "text_cnn.yaml")  # no data config: a clear error
    with pytest.raises(ValueError, match="vocab_size must be an int >= 2, got None"):
        instantiate(alone)(input_shape=(16,), num_classes=3)


def test_overrides_reach_the_model():
    cfg = OmegaConf.load(CONF / "mlp.yaml")
    cfg.merge_with_dotlist(["hidden=[32,16]", "dropout=0.25"])
    model = instantiate(cfg)(input_shape=(40,), num_classes=3)
    assert [m.out_features for m in model.net if isinstance(m, torch.nn.Linear)] == [32, 16, 3]
    assert [m.p for m in model.net if isinstance(m, torch.nn.Dropout)] == [0.25, 0.25]


def test_resnet20_depth_is_fixed_by_its_yaml():
    model = instantiate(OmegaConf.load(CONF / "resnet20.yaml"))(
        input_shape=(3, 8, 8), num_classes=10
    )
    assert sum(p.numel() for p in model.parameters()) == 269_722
