"""analyses: experiments that compose the areas (post-training runs, the metacognitive atlas, the demo)."""
from metalens.analyses.atlas import AtlasConfig, AtlasResult, atlas_demo, run_atlas
from metalens.analyses.battery import Item, arithmetic_items, read_battery, read_items, shipped_facts
from metalens.analyses.demo import DemoConfig, DemoResult, run_demo
from metalens.analyses.posttrain import PosttrainConfig, PosttrainResult, run_posttrain

__all__: list[str] = [
    "AtlasConfig", "AtlasResult", "DemoConfig", "DemoResult", "Item", "PosttrainConfig", "PosttrainResult",
    "arithmetic_items", "atlas_demo", "read_battery", "read_items", "run_atlas", "run_demo", "run_posttrain",
    "shipped_facts",
]
