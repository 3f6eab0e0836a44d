"""The introspection notebook executes end to end."""
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "introspect.ipynb"


def test_introspect_notebook_executes_and_shows_bit_identical_logits():
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "normal logits bit-identical: True" in text
    assert "head bins sum to one: True" in text
    assert "live sampler: tokens" in text
