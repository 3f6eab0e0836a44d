"""steering: rule-following steering vectors, applied during (batched, KV-cached) generation.

A rule in plain language -> contrastive pairs -> `train` -> `SteeringVector` ->
`generate(model, prompts, vector, strength=...)`, scored by rule checkers for adherence and
by the unsteered model for fluency; `RuleBook` holds many rules, `mentor` grows it.
"""
from metalens.steering.checkers import Adherence, PatternChecker, ProbeChecker, adherence, checker_for
from metalens.steering.evaluate import SweepResult, evaluate, sweep, token_loss
from metalens.steering.generate import generate, steering_sum
from metalens.steering.mentor import MentorLog, checker_judge, mentor, model_judge
from metalens.steering.pipeline import demo, steer_rule
from metalens.steering.rulebook import Entry, RuleBook
from metalens.steering.rules import Rule, find_rule, heldout_prompts, library, pairs_for_rule, read_pairs, template_pairs
from metalens.steering.vector import SteeringVector, train

__all__ = [
    "Adherence", "Entry", "MentorLog", "PatternChecker", "ProbeChecker", "Rule", "RuleBook", "SteeringVector",
    "SweepResult", "adherence", "checker_for", "checker_judge", "demo", "evaluate", "find_rule", "generate",
    "heldout_prompts", "library", "mentor", "model_judge", "pairs_for_rule", "read_pairs", "steer_rule",
    "steering_sum", "sweep", "template_pairs", "token_loss", "train",
]
