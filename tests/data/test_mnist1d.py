import random
import socket

import numpy as np
import pytest
import torch

from adaptls.data import MNIST1DDataModule
from adaptls.data import mnist1d as mnist1d_module
from adaptls.data.mnist1d import generate_mnist1d


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The benchmark arrays, generated once for this file, with no network and in an empty
    working directory (the mnist1d package's own loader would write a pickle there)."""
    workdir = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setattr(socket, "socket", _no_network)
        data = generate_mnist1d()
    assert list(workdir.iterdir()) == []
    return data


def _no_network(*args, **kwargs):
    raise AssertionError("MNIST-1D generation tried to use the network")


@pytest.fixture
def datamodule(published, monkeypatch):
    """MNIST1DDataModule factory reusing the generated arrays."""
    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", lambda seed: published)

    def build(**kwargs):
        dm = MNIST1DDataModule(**kwargs)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    return build


def test_published_split_is_4000_train_1000_test_of_length_40(published):
    assert published["x"].shape == (4000, 40) and published["x_test"].shape == (1000, 40)
    assert set(np.unique(published["y"])) == set(range(10))
    assert np.bincount(published["y_test"]).min() > 80  # roughly balanced test set


def test_generation_is_deterministic_and_leaves_global_rngs_alone(published):
    random.seed(123)
    np.random.seed(123)
    expected = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    again = generate_mnist1d(42)
    assert (random.random(), np.random.rand()) == expected
    for key in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(again[key], published[key])


def test_datamodule_serves_the_split_with_a_stratified_validation_set(published, datamodule):
    dm = datamodule(val_fraction=0.1)
    assert (dm.num_classes, dm.input_shape) == (10, (1, 40))
    assert dm.num_train + len(dm.val_dataset) == 4000 and len(dm.test_dataset) == 1000
    expected_val = np.floor(0.1 * np.bincount(published["y"]) + 0.5).astype(int).tolist()
    assert torch.bincount(dm.val_dataset.tensors[1]).tolist() == expected_val
    x, y, idx = next(iter(dm.train_dataloader()))
    assert (x.dtype, x.shape, y.dtype, idx.dtype) == (
        torch.float32,
        (128, 1, 40),
        torch.int64,
        torch.int64,
    )
    test_x = dm.test_dataset.tensors[0]
    np.testing.assert_allclose(test_x.squeeze(1).numpy(), published["x_test"], rtol=1e-6)


def test_long_tailed_variant_follows_the_profile_and_keeps_test_whole(datamodule):
    dm = datamodule(imbalance_ratio=10.0)
    counts = dm.class_counts
    n_max = counts[0]
    assert counts == [int(n_max * 0.1 ** (c / 9)) for c in range(10)]
    assert counts[-1] == n_max // 10
    assert torch.bincount(dm.train_dataset.tensors[1]).tolist() == counts
    assert len(dm.test_dataset) == 1000
    assert len(dm.val_dataset) == len(datamodule().val_dataset)  # held out before subsampling


def test_seed_changes_the_split_but_not_the_data(datamodule):
    a, b, c = datamodule(seed=0), datamodule(seed=0), datamodule(seed=1)
    assert torch.equal(a.val_dataset.tensors[0], b.val_dataset.tensors[0])
    assert not torch.equal(a.val_dataset.tensors[0], c.val_dataset.tensors[0])
    assert torch.equal(a.test_dataset.tensors[0], c.test_dataset.tensors[0])


def test_fresh_validation_trains_on_all_4000_and_validates_on_another_draw(published):
    other = generate_mnist1d(43)
    calls = []

    def fake(seed):
        calls.append(seed)
        return published if seed == 42 else other

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist1d_module, "generate_mnist1d", fake)
        dm = MNIST1DDataModule(val_source="fresh", val_fraction=0.1)
        dm.prepare_data()
        dm.setup("fit")
    assert sorted(calls) == [42, 43]
    x_train, y_train, _ = dm.train_dataset.tensors
    x_val, y_val, _ = dm.val_dataset.tensors
    assert len(y_train) == 4000 and len(y_val) == 400
    np.testing.assert_allclose(x_train.squeeze(1).numpy(), published["x"], rtol=1e-6)
    counts = torch.bincount(y_val, minlength=10)
    assert counts.min() >= 36 and counts.max() <= 44  # stratified: about 10% of each class
    drawn = torch.from_numpy(other["x"]).float()
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.cdist(x_val.squeeze(1), drawn, compute_mode=exact).min(1).values.max() < 1e-5
    with pytest.raises(ValueError, match="val_source must be one of 'holdout', 'fresh'"):
        MNIST1DDataModule(val_source="test")
