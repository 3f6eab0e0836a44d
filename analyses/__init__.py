"""analyses: experiments that compose the areas (post-training runs, the metacognitive atlas, the demo).

Sensitivity (`metalens sensitivity atlas`): `run_atlas_sensitivity` with a `PlantedMonitor` in one stated signal.
"""
from metalens.analyses.atlas import AtlasConfig, AtlasResult, atlas_demo, run_atlas
from metalens.analyses.atlas_planted import PlantedMonitor
from metalens.analyses.atlas_sensitivity import AtlasSensitivityConfig, run_atlas_sensitivity
from metalens.analyses.battery import Item, arithmetic_items, read_battery, read_items, shipped_facts
from metalens.analyses.demo import DemoConfig, DemoResult, run_demo
from metalens.analyses.posttrain import PosttrainConfig, PosttrainResult, run_posttrain

__all__: list[str] = [
    "AtlasConfig", "AtlasResult", "AtlasSensitivityConfig", "DemoConfig", "DemoResult", "Item", "PlantedMonitor",
    "PosttrainConfig", "PosttrainResult", "arithmetic_items", "atlas_demo", "read_battery", "read_items", "run_atlas",
    "run_atlas_sensitivity", "run_demo", "run_posttrain", "shipped_facts",
]
