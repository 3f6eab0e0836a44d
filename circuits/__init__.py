"""circuits: which attention heads carry a behaviour, proven by patching and ablation.

Workflows (`run_x(model, config, *, out=None, progress=True)`): `run_heads` (`metalens heads`),
`run_emergent_heads` (`metalens emergent-heads`, base vs post-trained), `run_lens` (`metalens lens`) and
`run_features(model, sae, config)` (`metalens features`: attribution patching over an SAE's features).
Pieces: contrast tasks (`make_task`, `ContrastTask`: arithmetic, induction, factual, IOI, greater-than, your
pairs), per-head attribution / exact patching, edge attribution and `find_edge_circuit` with its
faithfulness curves, `ablate` / `scale_heads`, head detectors, `compare` (the circuits of two models),
graph files in the EAP-IG layout, `logit_lens` and attention views. Plotly figures in `metalens.circuits.plots`.
Sensitivity (`metalens sensitivity emergent-heads`): `run_emergent_heads_sensitivity` with `PlantedHeads`
(two heads, or their blocks' MLPs as the control, that write the task's answer in a copy of the model).
"""
from metalens.circuits import plots
from metalens.circuits.ablation import ablate, scale_heads
from metalens.circuits.attention import attention_patterns
from metalens.circuits.attribution import attribute_heads
from metalens.circuits.compare import compare
from metalens.circuits.demo import demo
from metalens.circuits.detect import detect_heads
from metalens.circuits.edges import attribute_edges, extract_circuit
from metalens.circuits.emergent import EmergentConfig, EmergentResult, run_emergent_heads
from metalens.circuits.emergent_planted import PlantedHeads
from metalens.circuits.emergent_sensitivity import EmergentSensitivityConfig, run_emergent_heads_sensitivity
from metalens.circuits.feature_attribution import (FeatureAttribution, attribute_features, patch_features_exact,
                                                   patch_site_exact)
from metalens.circuits.features import FeaturesConfig, FeaturesResult, run_features
from metalens.circuits.faithfulness import faithfulness_curves, find_edge_circuit
from metalens.circuits.graph import export_graph, import_graph
from metalens.circuits.heads import HeadsConfig, HeadsResult, run_heads
from metalens.circuits.lens import LensConfig, LensResult, logit_lens, run_lens
from metalens.circuits.patching import patch_heads_exact
from metalens.circuits.tasks import ContrastTask, make_task

__all__ = [
    "ContrastTask", "make_task",
    "attribute_heads", "patch_heads_exact", "attribute_edges", "extract_circuit",
    "find_edge_circuit", "faithfulness_curves", "export_graph", "import_graph",
    "ablate", "scale_heads", "detect_heads", "compare", "attention_patterns",
    "HeadsConfig", "HeadsResult", "run_heads",
    "EmergentConfig", "EmergentResult", "run_emergent_heads",
    "PlantedHeads", "EmergentSensitivityConfig", "run_emergent_heads_sensitivity",
    "LensConfig", "LensResult", "run_lens", "logit_lens",
    "FeatureAttribution", "attribute_features", "patch_features_exact", "patch_site_exact",
    "FeaturesConfig", "FeaturesResult", "run_features",
]
