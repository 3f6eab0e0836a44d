"""notebooks/circuits.ipynb runs end to end."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_circuits_notebook_executes_without_errors(monkeypatch):
    monkeypatch.setenv("METALENS_NOTEBOOK_MODEL", "tiny")  # the kernel inherits it; committed outputs are gemma's
    nb = nbformat.read(ROOT / "notebooks" / "circuits.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
