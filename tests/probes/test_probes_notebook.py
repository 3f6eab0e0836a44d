"""The neurofeedback notebook runs top to bottom; the suite runs it on a tiny random-weight model
through METALENS_NOTEBOOK_MODEL (the committed outputs come from gemma-3-270m)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "probes_neurofeedback.ipynb"


def test_notebook_executes_on_the_tiny_model_and_draws_the_learning_curves(monkeypatch):
    monkeypatch.setenv("METALENS_NOTEBOOK_MODEL", "tiny")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) + str(o.get("data", {}).get("text/markdown", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "tiny-llama" in outputs and "shuffled" in outputs and "N<=2" in outputs
    assert "| LR |" in outputs and "reportable axes:" in outputs
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_committed_notebook_carries_outputs_from_the_real_model_and_stays_small():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert NOTEBOOK.stat().st_size < 2_000_000
    first = nb.cells[1]
    assert "METALENS_NOTEBOOK_MODEL" in first.source and '"gemma-3-270m"' in first.source
    loading = next(c for c in nb.cells if c.cell_type == "code" and "print(model.name" in c.source)
    printed = "".join(str(o.get("text", "")) for o in loading.get("outputs", []))
    assert "gemma-3-270m layers:" in printed, "commit the notebook executed on gemma-3-270m, with its outputs"
