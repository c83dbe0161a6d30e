"""The console script ``adaptls-train`` is installed and starts ``adaptls.train.main``
(``python -m adaptls.train`` runs in the multirun and DDP tests)."""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

import adaptls.train


def test_the_console_script_is_installed_and_points_at_main():
    (script,) = entry_points(group="console_scripts", name="adaptls-train")
    assert script.load() is adaptls.train.main
    path = shutil.which("adaptls-train", path=str(Path(sys.executable).parent))
    assert path is not None and os.access(path, os.X_OK)
