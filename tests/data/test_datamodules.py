import pytest
import pytorch_lightning as pl
import torch

from adaptls.data import DigitsDataModule, SyntheticDataModule


def _ready(cls, **kwargs):
    dm = cls(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("cls", [DigitsDataModule, SyntheticDataModule])
def test_batches_are_inputs_targets_and_split_positions(cls):
    dm = _ready(cls, batch_size=32)
    assert isinstance(dm, pl.LightningDataModule)
    for loader, dataset in [
        (dm.train_dataloader(), dm.train_dataset),
        (dm.val_dataloader(), dm.val_dataset),
        (dm.test_dataloader(), dm.test_dataset),
    ]:
        seen = []
        for batch in loader:
            assert isinstance(batch, tuple) and len(batch) == 3
            x, y, idx = batch
            assert (x.dtype, y.dtype, idx.dtype) == (torch.float32, torch.int64, torch.int64)
            assert x.shape[1:] == dm.input_shape
            assert torch.equal(x, dataset.tensors[0][idx]) and torch.equal(
                y, dataset.tensors[1][idx]
            )
            seen.append(idx)
        assert torch.equal(torch.cat(seen).sort().values, torch.arange(len(dataset)))


def test_digits_is_the_scaled_sklearn_set_with_a_fixed_test_split():
    a = _ready(DigitsDataModule, seed=0)
    b = _ready(DigitsDataModule, seed=5)
    assert (a.num_classes, a.input_shape) == (10, (64,))
    assert a.num_train + len(a.val_dataset) + len(a.test_dataset) == 1797
    assert len(a.test_dataset) == 359
    x = a.train_dataset.tensors[0]
    assert x.min() == 0 and x.max() == 1
    assert torch.equal(a.test_dataset.tensors[0], b.test_dataset.tensors[0])
    assert not torch.equal(a.val_dataset.tensors[0], b.val_dataset.tensors[0])


def test_synthetic_is_a_seeded_balanced_mixture_whose_separation_matters():
    a = _ready(SyntheticDataModule, num_classes=4, dim=8, num_train=400, num_test=200, seed=3)
    b = _ready(SyntheticDataModule, num_classes=4, dim=8, num_train=400, num_test=200, seed=3)
    assert (a.num_classes, a.input_shape, a.class_counts) == (4, (8,), [90] * 4)
    assert torch.bincount(a.test_dataset.tensors[1]).tolist() == [50] * 4
    assert torch.equal(a.train_dataset.tensors[0], b.train_dataset.tensors[0])

    def nearest_mean_accuracy(separation):
        dm = _ready(SyntheticDataModule, num_classes=4, dim=8, separation=separation, seed=0)
        x, y, _ = dm.train_dataset.tensors
        means = torch.stack([x[y == c].mean(0) for c in range(4)])
        xt, yt, _ = dm.test_dataset.tensors
        return (torch.cdist(xt, means).argmin(1) == yt).float().mean().item()

    assert nearest_mean_accuracy(0.0) < 0.4 < 0.95 < nearest_mean_accuracy(6.0)


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_class_counts_are_the_training_targets_and_test_stays_balanced(profile):
    dm = _ready(SyntheticDataModule, imbalance_ratio=20.0, imbalance_profile=profile)
    assert torch.bincount(dm.train_dataset.tensors[1], minlength=10).tolist() == dm.class_counts
    assert dm.num_train == sum(dm.class_counts) == len(dm.train_dataset)
    assert dm.class_counts[0] == 360 and dm.class_counts[-1] == 18
    assert torch.bincount(dm.val_dataset.tensors[1]).tolist() == [40] * 10
    assert torch.bincount(dm.test_dataset.tensors[1]).tolist() == [100] * 10


def test_training_order_is_shuffled_and_seeded():
    def order(seed):
        return torch.cat(
            [idx for _, _, idx in _ready(DigitsDataModule, seed=seed).train_dataloader()]
        )

    first = order(0)
    assert not torch.equal(first, torch.arange(len(first)))
    assert torch.equal(first, order(0))
    assert not torch.equal(first, order(1))


def test_data_facts_before_setup_raise_a_clear_error():
    dm = DigitsDataModule()
    assert dm.num_classes == 10  # known from the constructor
    with pytest.raises(RuntimeError, match=r"call prepare_data\(\) and setup\(\) first"):
        _ = dm.class_counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"imbalance_ratio": -3.0}, "imbalance_ratio must be >= 1, got -3.0"),
        (
            {"imbalance_ratio": float("nan")},
            "imbalance_ratio must be a finite number >= 1, got nan",
        ),
        (
            {"imbalance_profile": "linear"},
            "imbalance_profile must be one of 'exp', 'step'; got 'linear'",
        ),
        ({"val_fraction": 0.0}, r"val_fraction must be a number in \(0, 1\), got 0.0"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number in \(0, 1\), got 1.0"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"num_workers": -1}, "num_workers must be an int >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an int >= 0, got 1.5"),
        ({"num_classes": 1}, "num_classes must be an int >= 2, got 1"),
        ({"separation": -1.0}, "separation must be >= 0, got -1.0"),
        ({"num_train": 10}, "num_train must be an int >= 20, got 10"),
    ],
)
def test_bad_hyperparameters_name_the_parameter_value_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticDataModule(**kwargs)


def test_an_unreachable_profile_is_reported_at_setup():
    dm = SyntheticDataModule(num_train=200, imbalance_ratio=50.0)
    with pytest.raises(
        ValueError, match=r"imbalance_ratio=50\.0 leaves the rarest class with no sample"
    ):
        dm.setup()
