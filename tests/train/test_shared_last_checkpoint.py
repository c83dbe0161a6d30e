"""SharedLastCheckpoint: last.ckpt is current every epoch, links best.ckpt when both hold
one state, and holds what Lightning's ModelCheckpoint writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from adaptls.callbacks import SharedLastCheckpoint
from adaptls.checks import atomic_link
from adaptls.run.checkpoint_io import AtomicCheckpointIO


class _Scripted(pl.LightningModule):
    """Logs val/x from a script, one value per epoch (improving or not, as given)."""

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.script = script

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/x", self.script[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(callback_cls: type[ModelCheckpoint], dirpath: Path, script: list[float]) -> None:
    pl.seed_everything(0, verbose=False)
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    callback = callback_cls(
        dirpath=dirpath,
        monitor="val/x",
        mode="min",
        save_top_k=1,
        save_last=True,
        filename="best",
        auto_insert_metric_name=False,
        save_on_train_epoch_end=True,
    )
    trainer = pl.Trainer(
        max_epochs=len(script),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        deterministic=True,
    )
    trainer.fit(_Scripted(script), loader, loader)


def _assert_same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("script", [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
def test_last_links_best_and_both_match_lightnings(tmp_path: Path, script: list[float]) -> None:
    """The last epoch improves (or only epoch 0 does: Lightning >= 2.6 then keeps both at
    epoch 0, here last.ckpt moves on): best.ckpt is Lightning's."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _fit(SharedLastCheckpoint, ours, script)
    _fit(ModelCheckpoint, theirs, script)
    names = sorted(p.name for p in theirs.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names == ["best.ckpt", "last.ckpt"]
    compared = ["best.ckpt", "last.ckpt"] if script[-1] == min(script) else ["best.ckpt"]
    for name in compared:
        mine, lightning = _load(ours / name), _load(theirs / name)
        # The callback states differ by their directory, and Lightning's first best.ckpt
        # records last_model_path "" (the last file is named right after it is written).
        (state,) = mine.pop("callbacks").values()
        (reference,) = lightning.pop("callbacks").values()
        assert Path(state["last_model_path"]).name == "last.ckpt"
        assert Path(reference["last_model_path"]).name in ("", "last.ckpt")
        assert state["best_model_score"] == reference["best_model_score"]
        _assert_same(mine, lightning, name)
    best, last = (ours / "best.ckpt").stat(), (ours / "last.ckpt").stat()
    linked = script[-1] == min(script)  # saved together at the end: one file, two names
    assert (best.st_ino == last.st_ino) is linked
    assert _load(ours / "last.ckpt")["epoch"] == len(script) - 1


def test_last_is_current_when_the_monitor_does_not_improve(tmp_path: Path) -> None:
    _fit(SharedLastCheckpoint, tmp_path, [3.0, 2.0, 4.0])
    best, last = _load(tmp_path / "best.ckpt"), _load(tmp_path / "last.ckpt")
    assert (best["epoch"], last["epoch"]) == (1, 2)
    assert not os.path.samefile(tmp_path / "best.ckpt", tmp_path / "last.ckpt")
    (state,) = last["callbacks"].values()
    assert Path(state["best_model_path"]).name == "best.ckpt"
    assert float(state["best_model_score"]) == 2.0


def test_resumes_from_a_modelcheckpoint_state(tmp_path: Path) -> None:
    kwargs = {"monitor": "val/x", "mode": "min", "save_last": True}
    assert SharedLastCheckpoint(**kwargs).state_key == ModelCheckpoint(**kwargs).state_key


def test_atomic_link_replaces_the_name_only(tmp_path: Path) -> None:
    source, target = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    source.write_bytes(b"new")
    target.write_bytes(b"old")
    assert atomic_link(source, target)
    assert target.read_bytes() == b"new" and os.path.samefile(source, target)
    AtomicCheckpointIO().save_checkpoint({"epoch": 2}, source)  # a later save: new file
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not atomic_link(tmp_path / "missing.ckpt", target)
    assert target.read_bytes() == b"new"
