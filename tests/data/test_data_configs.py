"""Every conf/data option composes and instantiates its datamodule (no data is loaded)."""

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import adaptls.data as data

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
EXPECTED = {
    "mnist1d": (data.MNIST1DDataModule, 1.0),
    "mnist1d_lt": (data.MNIST1DDataModule, 10.0),
    "digits": (data.DigitsDataModule, 1.0),
    "synthetic": (data.SyntheticDataModule, 1.0),
    "cifar10": (data.CIFAR10DataModule, 1.0),
    "cifar10_lt": (data.CIFAR10DataModule, 100.0),
    "cifar100": (data.CIFAR100DataModule, 1.0),
    "cifar100_lt": (data.CIFAR100DataModule, 100.0),
    "text_cls": (data.TextClassificationDataModule, 1.0),
    "text_cls_lt": (data.TextClassificationDataModule, 100.0),
    "text_lm": (data.TextLMDataModule, 1.0),
    "text_mt": (data.TextMTDataModule, 1.0),
}


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    """conf/data under a minimal primary config that defines what the yamls interpolate."""
    root = tmp_path_factory.mktemp("conf")
    shutil.copytree(CONF, root / "data")
    (root / "main.yaml").write_text(
        "defaults:\n  - data: mnist1d\n  - _self_\nseed: 7\npaths:\n  data_dir: /tmp/adaptls-data\n"
    )
    return str(root)


def test_every_data_option_is_covered():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_data_option_instantiates(config_dir, name):
    cls, ratio = EXPECTED[name]
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose("main", overrides=[f"data={name}"])
    dm = instantiate(cfg.data)
    assert type(dm) is cls
    assert (dm.seed, dm.imbalance_ratio, dm.batch_size) == (7, ratio, cfg.data.batch_size)
    if hasattr(dm, "data_dir"):
        assert str(dm.data_dir) == "/tmp/adaptls-data"


def test_a_negative_imbalance_ratio_fails_naming_the_key(config_dir):
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose("main", overrides=["data=mnist1d_lt", "data.imbalance_ratio=-3"])
    with pytest.raises(Exception, match="imbalance_ratio must be >= 1, got -3"):
        instantiate(cfg.data)
