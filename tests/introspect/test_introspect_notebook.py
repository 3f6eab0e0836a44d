"""The introspection notebook executes end to end (on a tiny model, chosen through its first cell)."""
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "introspect.ipynb"


def test_committed_notebook_carries_its_gemma_outputs_and_stays_small():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "METALENS_NOTEBOOK_MODEL" in nb.cells[1].source
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "gemma-3-270m" in text and "normal logits bit-identical: True" in text
    assert NOTEBOOK.stat().st_size < 2_000_000


def test_introspect_notebook_executes_on_a_tiny_model(monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("METALENS_NOTEBOOK_MODEL", "tiny")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "tiny" in text.splitlines()[0]
    assert "normal logits bit-identical: True" in text
    assert "head bins sum to one: True" in text
    assert "paired comparisons against majority voting" in text
    assert "live sampler: tokens" in text
