"""steering: steering vectors and the three workflows built on them.

Core (here): `SteeringVector` (per-layer directions; `apply`/`edits` scope the effect, `save`/`load`,
`to_gguf`/`from_gguf`), `train_steering_vector` (contrastive pairs -> vector), steered `generate`
and `token_loss` (fluency under the unsteered model); `FeatureSteer` (add or clamp one SAE feature,
used wherever a vector is) with `feature_stats` / `decoder_cosines` to choose the feature. Products,
each a subpackage with its own API:

- `steering.rules`: a rule in plain language -> pairs -> vector -> layer x strength sweep -> `RuleBook`,
  optional refinement rounds; `run_steer(model, SteerConfig(...))` -> `SteerResult` (`metalens steer`);
  `run_steer_feature(model, FeatureSteerConfig(rule, sae=DIR))` -> `FeatureSteerResult`, the rule steered by one
  SAE feature beside its vector (`metalens steer --sae DIR`).
- `steering.ab`: A/B behaviour items -> CAA vector -> judge-free propensity per layer x strength;
  `run_steer_ab(model, SteerABConfig(data=...))` -> `SteerABResult` (`metalens steer-ab`).
- `steering.mentor`: MENTOR (rule graph from self-assessment, retrieved rule vectors, attack success);
  `run_mentor(model, MentorConfig())` -> `MentorResult` (`metalens mentor`).
- `steering.io`: llama.cpp control-vector GGUF files (behind `SteeringVector.to_gguf` / `from_gguf`).
"""
from metalens.steering.ab import SteerABConfig, SteerABResult, read_ab, run_steer_ab
from metalens.steering.feature import FeatureSteer, FeatureStats, decoder_cosines, feature_stats
from metalens.steering.fluency import token_loss
from metalens.steering.generate import generate
from metalens.steering.mentor import MentorConfig, MentorResult, RuleGraph, Verdict, assessor_for, run_mentor
from metalens.steering.rules import (FeatureSteerConfig, FeatureSteerResult, Rule, RuleBook, SteerConfig, SteerResult,
                                     adherence, checker_for, demo, library, pairs_for_rule, refine_rules, run_steer,
                                     run_steer_feature, sweep)
from metalens.steering.vector import SteeringVector, train_steering_vector

__all__ = [
    # core
    "SteeringVector", "generate", "token_loss", "train_steering_vector",
    # SAE features
    "FeatureSteer", "FeatureStats", "decoder_cosines", "feature_stats",
    # rules
    "Rule", "RuleBook", "SteerConfig", "SteerResult", "adherence", "checker_for", "demo", "library",
    "pairs_for_rule", "refine_rules", "run_steer", "sweep",
    "FeatureSteerConfig", "FeatureSteerResult", "run_steer_feature",
    # A/B behaviours
    "SteerABConfig", "SteerABResult", "read_ab", "run_steer_ab",
    # MENTOR
    "MentorConfig", "MentorResult", "RuleGraph", "Verdict", "assessor_for", "run_mentor",
]
