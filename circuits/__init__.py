"""circuits: which attention heads carry a behaviour, proven by patching and ablation.

Tasks (clean/corrupted pairs + metric), per-head attribution patching / EAP-IG / exact patching,
edge attribution with circuit extraction and faithfulness, `ablate` / `scale_heads` context
managers, head detectors, base-vs-post-trained comparison (emergent heads) and plots.
"""
from metalens.circuits.ablation import ablate, scale_heads
from metalens.circuits.accuracy import generation_accuracy
from metalens.circuits.attribution import attribute_heads
from metalens.checkpoints import list_checkpoints, load_checkpoint
from metalens.circuits.compare import Circuit, Comparison, build_circuit, compare
from metalens.circuits.demo import demo
from metalens.circuits.detect import detect_heads, top_heads
from metalens.circuits.edges import EdgeScores, attribute_edges, circuit_heads, extract_circuit, faithfulness
from metalens.circuits.emergent import cohorts, emergent_heads
from metalens.circuits.heads import HeadScores, find_heads, heads_report, spearman
from metalens.circuits.metrics import prepare
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.plots import checkpoints_heatmap, circuit_graph, cohort_plot, comparison_heatmap, head_heatmap
from metalens.circuits.tasks import Task, arithmetic_task, factual_task, induction_task, load_task, make_task

__all__ = [
    "Circuit", "Comparison", "EdgeScores", "HeadScores", "Task",
    "ablate", "arithmetic_task", "attribute_edges", "attribute_heads", "build_circuit", "checkpoints_heatmap",
    "circuit_graph", "circuit_heads", "cohort_plot", "cohorts", "compare", "comparison_heatmap", "demo",
    "detect_heads", "emergent_heads", "extract_circuit", "factual_task", "faithfulness", "find_heads",
    "generation_accuracy", "head_heatmap", "heads_report", "induction_task", "list_checkpoints",
    "load_checkpoint", "load_task", "make_task", "patch_heads_exact", "prepare", "scale_heads", "spearman",
    "top_heads",
]
