"""metalens.introspect: reward/remaining-length heads in reserved logits, and adaptive sampling.

Train K = R x L never-used unembedding rows to predict, at every token, the joint distribution
of the final reward and the tokens remaining (the ZIP-RC idea), read it from the logits the
forward pass already computes, and spend samples adaptively with it.
"""
from metalens.introspect.api import demo, introspect_eval, introspect_sample, introspect_train
from metalens.introspect.bins import BinSpec, geometric_edges, prefix_labels
from metalens.introspect.crossval import cross_validate
from metalens.introspect.decode import Samples, StopTokens, sample
from metalens.introspect.features import Positions, rollout_positions
from metalens.introspect.head import HeadReadout, ReservedHead, ReservedMask, reserved_block
from metalens.introspect.live import AdaptiveResult, adaptive_generate
from metalens.introspect.policy import checkpoint
from metalens.introspect.rollouts import (Task, arithmetic_tasks, few_shot_prefix, generate_rollouts,
                                        load_rollouts, read_tasks, solve_rates)
from metalens.introspect.train import shuffled, train_head

__all__ = [
    "AdaptiveResult", "BinSpec", "HeadReadout", "Positions", "ReservedHead", "ReservedMask", "Samples",
    "StopTokens", "Task", "adaptive_generate", "arithmetic_tasks", "checkpoint", "cross_validate", "demo",
    "few_shot_prefix", "generate_rollouts", "geometric_edges", "introspect_eval", "introspect_sample",
    "introspect_train", "load_rollouts", "prefix_labels", "read_tasks", "reserved_block", "rollout_positions",
    "sample", "shuffled", "solve_rates", "train_head",
]
