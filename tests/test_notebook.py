"""notebooks/compare_strategies.ipynb: committed clean, and it runs end to end on a tiny sweep."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "compare_strategies.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_notebook_runs_a_tiny_sweep_and_shows_the_table(tmp_path: Path, monkeypatch) -> None:
    sweep = tmp_path / "sweep"
    # The first cell reads these; the kernel inherits this process's environment.
    monkeypatch.setenv("ADAPTLS_NB_EPOCHS", "1")
    monkeypatch.setenv("ADAPTLS_NB_LIMIT_BATCHES", "2")
    monkeypatch.setenv("ADAPTLS_NB_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("ADAPTLS_NB_LOGGER", "none")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is ipykernel's own spec: jupyter_client starts it with this interpreter.
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    markdown = [
        output.data["text/markdown"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "text/markdown" in output.get("data", {})
    ]
    (table,) = markdown
    lines = table.splitlines()
    assert lines[0].startswith("| strategy | n | test/acc (%) | test/ece (%) |")
    assert sorted(line.split(" | ")[0] for line in lines[2:]) == [
        "| class_frequency",
        "| none",
        "| uniform",
    ]
    assert all(line.split(" | ")[1] == "2" for line in lines[2:])  # two seeds each
    images = [
        o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) == 2
    assert sorted(p.name for p in (sweep / "compare").iterdir()) == [
        "compare.csv",
        "reliability.png",
        "tradeoff.png",
    ]
    assert len(list(sweep.glob("*/metrics.json"))) == 6
