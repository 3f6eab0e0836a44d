"""analyses: experiments that compose the areas (post-training runs for the circuits comparison)."""
from metalens.analyses.posttrain import PosttrainConfig, PosttrainResult, run_posttrain

__all__: list[str] = ["PosttrainConfig", "PosttrainResult", "run_posttrain"]
