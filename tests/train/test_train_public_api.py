"""train.py uses the public APIs of Lightning, W&B and Hydra only: no private attribute of
their objects (the ``_target_`` config key aside), no filter on the text of a message, no
reassignment of the trainer's loggers or callbacks. Workarounds that need private state
live in adaptls.run.library_shims, tested there."""

from __future__ import annotations

import ast
import inspect

import adaptls.train


def tree() -> ast.Module:
    return ast.parse(inspect.getsource(adaptls.train))


def test_no_private_attribute_is_read_or_written():
    private = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree())
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not (node.attr.startswith("__") and node.attr.endswith("__"))
        and node.attr != "_target_"
    ]
    assert not private, private


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
