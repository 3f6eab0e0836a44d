"""metalens.introspect: reward/remaining-length heads in reserved logits, and adaptive sampling.

Train K = R x L never-used unembedding rows (mode `head`; or LoRA adapters, or the whole model,
mode `full`, with a KL to the frozen model) to predict, at every token, the joint distribution
of the final reward and the tokens remaining (the ZIP-RC idea), read it from the logits the
forward pass already computes, and spend samples adaptively with it.

Workflows: `run_train`, `run_eval`, `run_sample`, `run_compare`, each `(model, config, *, out=None,
progress=True)` returning a result with `save` / `load`. Rooms: `heads` (the head and its training
modes), `rollouts` (questions, graded samples, splits), `evaluation` (metrics, baselines,
cross-validation), `sampling` (the adaptive and utility samplers, replayed or live), `workflows`.

Sensitivity (`metalens sensitivity ziprc`): `run_label_noise_sensitivity` trains and evaluates the
head on copies of a rollout store with planted label noise (`rollouts.planted.plant_label_noise`);
`metalens sensitivity ziprc-sampler`: `run_oracle_sampler_sensitivity` replays the prune-only / best-of-N
samplers on a train run's out-of-fold pools read by an oracle head of known quality (`sampling.oracle_pools`).
"""
from metalens.introspect.demo import demo
from metalens.introspect.heads import (BinSpec, FullConfig, FullWeights, ReservedHead, relabel_with_head,
                                       rollout_positions, train_full, train_head, weights_applied)
from metalens.introspect.rollouts import Question, generate_rollouts, load_rollouts
from metalens.introspect.sampling import adaptive_generate, choose_actions, utility_generate
from metalens.introspect.sampler_sensitivity import OracleSamplerSensitivityConfig, run_oracle_sampler_sensitivity
from metalens.introspect.sensitivity import LabelNoiseSensitivityConfig, run_label_noise_sensitivity
from metalens.introspect.workflows import (CompareConfig, CompareResult, EvalConfig, EvalResult, SampleConfig,
                                           SampleResult, TrainConfig, TrainResult, run_compare, run_eval, run_sample,
                                           run_train)

__all__ = [
    "BinSpec", "CompareConfig", "CompareResult", "EvalConfig", "EvalResult", "FullConfig", "FullWeights",
    "LabelNoiseSensitivityConfig", "OracleSamplerSensitivityConfig", "Question", "ReservedHead", "SampleConfig",
    "SampleResult", "TrainConfig", "TrainResult", "adaptive_generate", "choose_actions", "demo", "generate_rollouts",
    "load_rollouts", "relabel_with_head", "rollout_positions", "run_compare", "run_eval", "run_label_noise_sensitivity",
    "run_oracle_sampler_sensitivity", "run_sample", "run_train", "train_full", "train_head", "utility_generate",
    "weights_applied",
]
