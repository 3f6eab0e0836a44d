"""Rule steering: a rule in plain language -> contrastive pairs -> vector -> layer x strength sweep -> rule book.

`run_steer(model, SteerConfig(rule))` -> `SteerResult` is the workflow (`metalens steer`); its stages are
`pairs_for_rule`, `checker_for`, `sweep` (scoring each setting with `evaluate`) and, with rounds,
`refine_rules` (judge steered replies, retrain on the failures, keep the best validation round).
`run_steer_feature(model, FeatureSteerConfig(rule, sae=DIR))` -> `FeatureSteerResult` steers the rule by one SAE
feature (clamp / add) beside its vector on the same prompts and checker (`metalens steer --sae`).
"""
from metalens.steering.rules.checkers import Adherence, PatternChecker, ProbeChecker, adherence, checker_for
from metalens.steering.rules.features import FeatureSteerConfig, FeatureSteerResult, choose_feature, run_steer_feature
from metalens.steering.rules.library import (Rule, find_rule, heldout_prompts, library, pairs_for_rule, read_pairs,
                                             template_pairs)
from metalens.steering.rules.refine import RefineLog, checker_judge, model_judge, refine_rules
from metalens.steering.rules.rulebook import Entry, RuleBook
from metalens.steering.rules.sweep import SweepResult, best_setting, evaluate, sweep, sweep_figure
from metalens.steering.rules.workflow import Score, SteerConfig, SteerResult, demo, run_steer, split_prompts

__all__ = [
    "Adherence", "Entry", "FeatureSteerConfig", "FeatureSteerResult", "PatternChecker", "ProbeChecker", "RefineLog",
    "Rule", "RuleBook", "Score", "SteerConfig", "choose_feature", "run_steer_feature",
    "SteerResult", "SweepResult", "adherence", "best_setting", "checker_for", "checker_judge", "demo", "evaluate",
    "find_rule", "heldout_prompts", "library", "model_judge", "pairs_for_rule", "read_pairs", "refine_rules",
    "run_steer", "split_prompts", "sweep", "sweep_figure", "template_pairs",
]
