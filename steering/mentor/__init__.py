"""MENTOR (arXiv 2511.07107): a rule graph grown from the model's self-assessment, retrieved rule vectors,
attack success on held-out risk queries.

`run_mentor(model, MentorConfig())` -> `MentorResult` is the workflow (`metalens mentor`). Modules:
`graph` (`RuleGraph`), `assess` (`Verdict`, assessors), `steer` (rule vectors, retrieval, per-row
steering), `data` (risk queries, splits, keyword checker), `rounds` (one run's rounds), `report`;
`sensitivity` (`metalens sensitivity mentor`): the detection curve of a topic rule by steering strength.
"""
from metalens.steering.mentor.assess import (CallableAssessor, CheckerAssessor, ModelAssessor, Verdict, assessor_for,
                                             option_ids, option_probs)
from metalens.steering.mentor.data import (KeywordChecker, RiskQuery, attack_success, read_queries, split_queries,
                                           subsample_queries)
from metalens.steering.mentor.graph import Edge, RuleGraph, RuleNode, bow_cosine
from metalens.steering.mentor.rounds import MentorRun, choose_strength
from metalens.steering.mentor.sensitivity import (MentorSensitivityConfig, TopicRule, run_mentor_sensitivity,
                                                  topic_inputs)
from metalens.steering.mentor.steer import (Retriever, generate_per_row, load_vectors, plan, rule_vectors, save_vectors,
                                            with_rules)
from metalens.steering.mentor.workflow import MentorConfig, MentorResult, check_resume, run_mentor

__all__ = [
    "CallableAssessor", "CheckerAssessor", "Edge", "KeywordChecker", "MentorConfig", "MentorResult", "MentorRun",
    "MentorSensitivityConfig", "ModelAssessor", "Retriever", "RiskQuery", "RuleGraph", "RuleNode", "TopicRule",
    "Verdict", "assessor_for", "attack_success", "bow_cosine", "check_resume", "choose_strength", "generate_per_row",
    "load_vectors", "option_ids", "option_probs", "plan", "read_queries", "rule_vectors", "run_mentor",
    "run_mentor_sensitivity", "save_vectors", "split_queries", "subsample_queries", "topic_inputs", "with_rules",
]
