"""Rollouts: questions with verifiable answers, the model's graded samples stored resumably, and
splits of the questions that keep commuted twins on one side; `plant_label_noise` copies a store with a
known share of its labels flipped (the sensitivity check's planting)."""
from metalens.introspect.rollouts.decode import Samples, sample, sample_many
from metalens.introspect.rollouts.planted import plant_label_noise
from metalens.introspect.rollouts.splits import problem_unit, problem_units, split_tasks
from metalens.introspect.rollouts.store import (TASKS, Question, few_shot_prefix, generate_rollouts, grade,
                                                is_complete, load_rollouts, read_questions, rollouts_settings,
                                                solve_rates, task_questions)

__all__ = [
    "TASKS", "Question", "Samples", "few_shot_prefix", "generate_rollouts", "grade", "is_complete", "load_rollouts",
    "plant_label_noise", "problem_unit", "problem_units", "read_questions", "rollouts_settings", "sample", "sample_many", "solve_rates",
    "split_tasks", "task_questions",
]
