from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from adaptls.data import CIFAR10DataModule, CIFAR100DataModule
from adaptls.data.download import ChecksumError, RemoteFile


@pytest.fixture
def cifar10(cifar10_remote, monkeypatch, tmp_path):
    """A CIFAR10DataModule factory reading the tiny archive instead of the real one."""
    monkeypatch.setattr(CIFAR10DataModule, "remote", cifar10_remote)

    def build(**kwargs):
        kwargs = {"data_dir": str(tmp_path / "cache"), "batch_size": 8, **kwargs}
        dm = CIFAR10DataModule(**kwargs)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    return build


def _clean(dm, images_uint8):
    """What the loaders should give for these stored images: normalised, not augmented."""
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


def test_reads_the_archive_into_normalised_float_batches(cifar10):
    dm = cifar10(val_fraction=0.1)
    assert (dm.num_classes, dm.input_shape) == (10, (3, 32, 32))
    assert (dm.num_train, len(dm.val_dataset), len(dm.test_dataset)) == (90, 10, 20)
    assert dm.class_counts == [9] * 10
    stored = dm.train_dataset.tensors[0]
    assert stored.dtype == torch.uint8 and stored.shape == (90, 3, 32, 32)
    # The fixture writes each image's class into its first pixel: labels follow images.
    assert torch.equal(stored[:, 0, 0, 0].long(), dm.train_dataset.tensors[1])
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y, idx = next(iter(loader))
        assert (x.dtype, y.dtype, idx.dtype) == (torch.float32, torch.int64, torch.int64)
        assert x.shape == (8, 3, 32, 32)
        dataset = loader.dataset
        assert torch.allclose(x, _clean(dm, dataset.tensors[0][idx]), atol=1e-6)
        assert torch.equal(y, dataset.tensors[1][idx])


def test_long_tailed_variant_subsamples_training_only(cifar10):
    dm = cifar10(imbalance_ratio=9.0)
    assert dm.class_counts == [9, 7, 5, 4, 3, 2, 2, 1, 1, 1]
    assert torch.bincount(dm.train_dataset.tensors[1]).tolist() == dm.class_counts
    assert torch.bincount(dm.val_dataset.tensors[1]).tolist() == [1] * 10
    assert torch.bincount(dm.test_dataset.tensors[1]).tolist() == [2] * 10


def test_cifar100_reads_fine_labels(cifar100_remote, monkeypatch, tmp_path):
    monkeypatch.setattr(CIFAR100DataModule, "remote", cifar100_remote)
    dm = CIFAR100DataModule(data_dir=str(tmp_path / "cache"), val_fraction=0.25)
    dm.prepare_data()
    dm.setup()
    assert dm.num_classes == 100 and dm.class_counts == [3] * 100
    assert len(dm.test_dataset) == 100
    assert torch.equal(dm.test_dataset.tensors[0][:, 0, 0, 0].long(), dm.test_dataset.tensors[1])


def test_corrupt_archive_gives_a_checksum_error_and_no_file(cifar10_remote, monkeypatch, tmp_path):
    wrong = RemoteFile(cifar10_remote.url, "0" * 32)
    monkeypatch.setattr(CIFAR10DataModule, "remote", wrong)
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "cache"))
    with pytest.raises(ChecksumError, match=f"expected md5 {'0' * 32}, got {cifar10_remote.md5}"):
        dm.prepare_data()
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_archive_without_download_says_how_to_get_it(monkeypatch, tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match=r"download=false: allow downloading"):
        dm.prepare_data()
    with pytest.raises(FileNotFoundError, match=r"call prepare_data\(\) before setup\(\)"):
        dm.setup()


def test_augmentation_runs_only_while_training_and_is_seeded(cifar10):
    dm = cifar10()
    batch = next(iter(dm.train_dataloader()))
    for stage in ("validating", "testing", None):
        dm.trainer = None if stage is None else SimpleNamespace(training=False)
        assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    first = dm.on_after_batch_transfer(batch, 0)
    torch.manual_seed(0)
    again = dm.on_after_batch_transfer(batch, 0)
    assert first[0].shape == batch[0].shape
    assert not torch.equal(first[0], batch[0])
    assert torch.equal(first[0], again[0])
    assert first[1] is batch[1] and first[2] is batch[2]
    dm.augment = False
    assert dm.on_after_batch_transfer(batch, 0) is batch


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3 * 32 * 32, 10)
        self.seen = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch)
        return nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_under_a_trainer_only_training_batches_are_augmented(cifar10):
    dm = cifar10()
    model = _Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=2,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    for x, _, idx in model.seen["val"]:
        assert torch.allclose(x, _clean(dm, dm.val_dataset.tensors[0][idx]), atol=1e-6)
    fill = -torch.tensor(dm.mean) / torch.tensor(dm.std)
    assert len(model.seen["train"]) == 2
    for x, _, idx in model.seen["train"]:
        clean = _clean(dm, dm.train_dataset.tensors[0][idx])
        assert x.shape == clean.shape and not torch.allclose(x, clean)
        for image, result in zip(clean, x, strict=True):
            assert any(torch.allclose(result, w, atol=1e-6) for w in _crops(image, fill))


def _crops(image, fill, padding=4):
    """Every random crop (padded with a black pixel) of an image, and its mirror image."""
    padded = fill.view(3, 1, 1).repeat(1, 32 + 2 * padding, 32 + 2 * padding)
    padded[:, padding:-padding, padding:-padding] = image
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + 32, left : left + 32]
            yield crop
            yield crop.flip(-1)
