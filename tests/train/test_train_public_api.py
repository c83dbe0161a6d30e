"""The run uses the public APIs of Lightning, torchmetrics, W&B and Hydra only.

train.py: no private attribute of any object (the ``_target_`` config key aside), no filter
on the text of a message, no reassignment of the trainer's loggers or callbacks. The
Lightning module, the callbacks, the metrics and the run layer: no private attribute of a
library object, read, written or overridden. Workarounds that need private state live in
adaptls.run.library_shims, each tested there against the library it works around.
"""

from __future__ import annotations

import ast
import inspect
from functools import cache
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from torchmetrics import MeanMetric, Metric

import adaptls
import adaptls.train

PACKAGE = Path(adaptls.__file__).parent
# Where the Lightning module, the callbacks, the metrics and the run layer live.
SCANNED = sorted(
    [PACKAGE / "module.py", PACKAGE / "train.py"]
    + [
        path
        for folder in ("callbacks", "metrics", "run")
        for path in (PACKAGE / folder).glob("*.py")
        if path.name != "library_shims.py"
    ]
)


def tree() -> ast.Module:
    return ast.parse(inspect.getsource(adaptls.train))


@cache
def library_private_names() -> frozenset[str]:
    """The private (single-underscore) names of the library objects the run meets: the
    classes' attributes and the instances' own."""
    objects: list[object] = [
        pl.Trainer(logger=False, enable_progress_bar=False),
        pl.LightningModule(),
        pl.Callback(),
        ModelCheckpoint(),
        TQDMProgressBar(),
        CSVLogger("."),
        MeanMetric(),
        torch.nn.Module(),
    ]
    classes = [type(o) for o in objects] + [Metric, WandbLogger, torch.optim.Optimizer]
    names = {n for c in classes for k in inspect.getmro(c) for n in vars(k)}
    names |= {n for o in objects for n in vars(o)}
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


def private_library_uses(source: str) -> list[tuple[int, str]]:
    """(line, name) of the ``.name`` accesses, ``getattr``/``setattr`` names and method
    definitions whose name is a library's private name."""
    private = library_private_names()
    found = []
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = node.name
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            name = node.args[1].value
        if isinstance(name, str) and name in private:
            found.append((node.lineno, name))
    return sorted(found)


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_library_attribute_outside_the_shims(path):
    assert not private_library_uses(path.read_text())


def test_the_scan_sees_private_library_attributes():
    # what the run layer once did: Lightning's logger connector and the running hook's
    # name, ModelCheckpoint's save methods and bookkeeping, torchmetrics' sync flags,
    # nn.Module's _apply
    source = (
        "def f(trainer, metric, callback):\n"
        "    trainer._logger_connector.should_update_logs\n"
        "    metric.sync_context(should_sync=metric._to_sync and not metric._is_synced)\n"
        "    callback._last_global_step_saved = 0\n"
        "    getattr(trainer.lightning_module, '_current_fx_name', None)\n"
        "class C:\n"
        "    def _save_last_checkpoint(self): ...\n"
        "    def _apply(self, fn): ...\n"
        "    def _own_helper(self): self._finite_loss = None\n"
    )
    assert sorted(name for _, name in private_library_uses(source)) == sorted(
        [
            "_logger_connector",
            "_to_sync",
            "_is_synced",
            "_last_global_step_saved",
            "_current_fx_name",
            "_save_last_checkpoint",
            "_apply",
        ]
    )


def test_no_message_is_filtered_by_its_text():
    for node in ast.walk(tree()):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in ("addFilter", "simplefilter"), node.lineno
            if node.func.attr == "filterwarnings":
                keywords = {k.arg for k in node.keywords}
                assert "message" not in keywords and len(node.args) <= 1, node.lineno


def test_the_trainer_is_never_rewired():
    for node in ast.walk(tree()):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                assert not (
                    isinstance(target, ast.Attribute) and target.attr in ("loggers", "callbacks")
                ), node.lineno
