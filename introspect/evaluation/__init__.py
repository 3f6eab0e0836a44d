"""Scoring a head: calibration metrics, the held-out comparison with its baselines (a probe, verbal
confidence, shuffled-label heads), k-fold cross-validation by problem, and the report's tables."""
from metalens.introspect.evaluation.crossval import cross_validate, problem_folds
from metalens.introspect.evaluation.evaluate import FRACTIONS, evaluate_head, fit_probe, rows_at_fraction
from metalens.introspect.evaluation.metrics import (above_chance, auroc, auroc_gap, brier, ece, reliability, summary,
                                                    within_problem_auroc)

__all__ = [
    "FRACTIONS", "above_chance", "auroc", "auroc_gap", "brier", "cross_validate", "ece", "evaluate_head", "fit_probe",
    "problem_folds", "reliability", "rows_at_fraction", "summary", "within_problem_auroc",
]
