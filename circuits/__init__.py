"""circuits: which attention heads carry a behaviour, proven by patching and ablation.

Contrast tasks (clean/corrupted pairs + metric: arithmetic, induction, factual, IOI, greater-than,
a user's CSV/JSONL), per-head attribution patching / EAP-IG / exact patching, edge attribution,
edge circuits that are run and their faithfulness curves, `ablate` / `scale_heads` context
managers, head detectors, base-vs-post-trained comparison (emergent heads), graph files in the
EAP-IG layout, the logit lens and attention views. Workflows: `run_heads`, `run_emergent_heads`
and `logit_lens`. Plotly figures in `metalens.circuits.plots`; the rest of each step in its module
(`tasks`, `attribution`, `patching`, `edges`, `faithfulness`, `graph`, `lens`, `attention`,
`ablation`, `detect`, `compare`, `emergent`).
"""
from metalens.circuits import plots
from metalens.circuits.ablation import ablate, scale_heads
from metalens.circuits.attention import attention_patterns
from metalens.circuits.attribution import attribute_heads
from metalens.circuits.compare import compare
from metalens.circuits.demo import demo
from metalens.circuits.detect import detect_heads
from metalens.circuits.edges import attribute_edges, extract_circuit
from metalens.circuits.faithfulness import faithfulness_curves, find_edge_circuit
from metalens.circuits.graph import export_graph, import_graph
from metalens.circuits.lens import LensResult, logit_lens
from metalens.circuits.emergent import EmergentConfig, EmergentResult, run_emergent_heads
from metalens.circuits.heads import HeadsConfig, HeadsResult, run_heads
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.tasks import ContrastTask, make_task

__all__ = [
    "ContrastTask", "make_task",
    "attribute_heads", "patch_heads_exact", "attribute_edges", "extract_circuit",
    "find_edge_circuit", "faithfulness_curves", "export_graph", "import_graph",
    "ablate", "scale_heads", "detect_heads", "compare", "attention_patterns",
    "HeadsConfig", "HeadsResult", "run_heads",
    "EmergentConfig", "EmergentResult", "run_emergent_heads",
    "LensResult", "logit_lens",
]
