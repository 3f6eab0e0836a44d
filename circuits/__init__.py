"""circuits: which attention heads carry a behaviour, proven by patching and ablation.

Contrast tasks (clean/corrupted pairs + metric), per-head attribution patching / EAP-IG / exact
patching, edge attribution and circuits, `ablate` / `scale_heads` context managers, head
detectors, and base-vs-post-trained comparison (emergent heads). Workflows: `run_heads` and
`run_emergent_heads`. Plotly figures in `metalens.circuits.plots`; the rest of each step in its
module (`tasks`, `attribution`, `patching`, `edges`, `ablation`, `detect`, `compare`, `emergent`).
"""
from metalens.circuits import plots
from metalens.circuits.ablation import ablate, scale_heads
from metalens.circuits.attribution import attribute_heads
from metalens.circuits.compare import compare
from metalens.circuits.demo import demo
from metalens.circuits.detect import detect_heads
from metalens.circuits.edges import attribute_edges, extract_circuit
from metalens.circuits.emergent import EmergentConfig, EmergentResult, run_emergent_heads
from metalens.circuits.heads import HeadsConfig, HeadsResult, run_heads
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.tasks import ContrastTask, make_task

__all__ = [
    "ContrastTask", "make_task",
    "attribute_heads", "patch_heads_exact", "attribute_edges", "extract_circuit",
    "ablate", "scale_heads", "detect_heads", "compare",
    "HeadsConfig", "HeadsResult", "run_heads",
    "EmergentConfig", "EmergentResult", "run_emergent_heads",
]
