"""steering: rule-following steering vectors, applied during (batched, KV-cached) generation.

A rule in plain language -> contrastive pairs (`pairs_for_rule`) -> `train_steering_vector` ->
`SteeringVector` -> `generate(model, prompts, vector, strength=...)`, scored by rule checkers
for adherence and by the unsteered model for fluency (`token_loss`); `sweep` picks a layer and
strength, `RuleBook` holds many rules, `mentor` grows it. `run_steer(model, SteerConfig(...))`
does it all and returns a `SteerResult` (what `metalens steer` calls). Everything else lives in
the submodules (`checkers`, `evaluate`, `generate`, `mentor`, `rulebook`, `rules`, `vector`).

A/B behaviours (`metalens steer-ab`): `run_steer_ab(model, SteerABConfig(data=...))` -> `SteerABResult`
(propensity, steerability and flips per layer x strength, no judge; submodules `ab`, `ab_pipeline`).
MENTOR as the paper describes it (`metalens mentor`): `run_mentor(model, MentorConfig())` -> `MentorResult`
(`RuleGraph`, self-assessment `Verdict`s, retrieved rule vectors; submodules `mentor_graph`, `mentor_assess`,
`mentor_steer`, `mentor_data`, `mentor_run`).
`SteeringVector.to_gguf` / `from_gguf` read and write llama.cpp control vectors (`controlvector`).
"""
from metalens.steering.ab import read_ab
from metalens.steering.ab_pipeline import SteerABConfig, SteerABResult, run_steer_ab
from metalens.steering.checkers import adherence, checker_for
from metalens.steering.evaluate import sweep, token_loss
from metalens.steering.generate import generate
from metalens.steering.mentor import mentor
from metalens.steering.mentor_assess import Verdict, assessor_for
from metalens.steering.mentor_graph import RuleGraph
from metalens.steering.mentor_run import MentorConfig, MentorResult, run_mentor
from metalens.steering.pipeline import SteerConfig, SteerResult, demo, run_steer
from metalens.steering.rulebook import RuleBook
from metalens.steering.rules import Rule, library, pairs_for_rule
from metalens.steering.vector import SteeringVector, train_steering_vector

__all__ = [
    "MentorConfig", "MentorResult", "Rule", "RuleBook", "RuleGraph", "Verdict", "assessor_for", "run_mentor", "SteerABConfig", "SteerABResult", "SteerConfig", "SteerResult", "SteeringVector", "adherence",
    "checker_for", "demo", "generate", "library", "mentor", "pairs_for_rule", "read_ab", "run_steer", "run_steer_ab",
    "sweep", "token_loss", "train_steering_vector",
]
