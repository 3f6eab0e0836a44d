"""The neurofeedback notebook runs top to bottom (on a tiny model when no saved run exists)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "probes_neurofeedback.ipynb"


def test_notebook_executes_and_draws_the_learning_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("METALENS_NF_RESULTS", str(tmp_path / "absent"))  # force the self-contained path
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "shuffled" in outputs and "N<=2" in outputs
