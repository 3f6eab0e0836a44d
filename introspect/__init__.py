"""metalens.introspect: reward/remaining-length heads in reserved logits, and adaptive sampling.

Train K = R x L never-used unembedding rows (mode `head`; or LoRA adapters, or the whole model,
mode `full`, with a KL to the frozen model) to predict, at every token, the joint distribution
of the final reward and the tokens remaining (the ZIP-RC idea), read it from the logits the
forward pass already computes, and spend samples adaptively with it.

Workflows: `run_train`, `run_eval`, `run_sample` (each `(model, config, *, out=None)`, returning
a result with `save` / `load`) and `compare_heads(model, heads, out=None)`. Building blocks stay importable from their modules
(`decode.sample`, `policy.decide`, `sampler.pareto`, `crossval.cross_validate`, ...).
"""
from metalens.introspect.bins import BinSpec
from metalens.introspect.branching import utility_generate
from metalens.introspect.compare import compare_heads
from metalens.introspect.demo import demo
from metalens.introspect.eval_run import EvalConfig, run_eval
from metalens.introspect.features import rollout_positions
from metalens.introspect.full import FullConfig, FullWeights, train_full, weights_applied
from metalens.introspect.head import ReservedHead
from metalens.introspect.live import adaptive_generate
from metalens.introspect.rollouts import Question, generate_rollouts, load_rollouts
from metalens.introspect.sample_run import SampleConfig, run_sample
from metalens.introspect.train import train_head
from metalens.introspect.train_run import TrainConfig, run_train
from metalens.introspect.utility import choose_actions
from metalens.introspect.values import relabel_with_head

__all__ = [
    "BinSpec", "EvalConfig", "FullConfig", "FullWeights", "Question", "ReservedHead", "SampleConfig", "TrainConfig",
    "adaptive_generate", "choose_actions", "compare_heads", "demo", "generate_rollouts", "load_rollouts",
    "relabel_with_head", "rollout_positions", "run_eval", "run_sample", "run_train", "train_full", "train_head", "utility_generate",
    "weights_applied",
]
