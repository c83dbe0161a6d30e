"""conf/model/*.yaml: partial factories that the training code completes with data facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from adaptls.models import CNN1D, MLP, ResNet

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
CASES = {
    "mlp": (MLP, (1, 40), {"hidden", "dropout"}),
    "cnn1d": (CNN1D, (1, 40), {"channels", "dropout"}),
    "resnet20": (ResNet, (3, 32, 32), {"dropout"}),
    "resnet32": (ResNet, (3, 32, 32), {"dropout"}),
}


def test_every_yaml_is_covered():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_yaml_builds_a_model_from_data_facts(name):
    cls, shape, keys = CASES[name]
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg._partial_ is True
    assert set(cfg) - {"_target_", "_partial_"} == keys
    model = instantiate(cfg)(input_shape=shape, num_classes=10)
    assert isinstance(model, cls)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


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
