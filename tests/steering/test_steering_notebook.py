"""The steering notebook runs top to bottom."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "steering.ipynb"


def test_steering_notebook_executes_without_error(monkeypatch):
    monkeypatch.setenv("METALENS_NOTEBOOK_MODEL", "tiny")  # the kernel inherits it; committed outputs are gemma's
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
