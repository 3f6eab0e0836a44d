"""Shared task data and graders used by several areas (arithmetic problems with difficulty levels)."""
from metalens.tasks.accuracy import generation_accuracy
from metalens.tasks.arithmetic import LEVELS, Problem, extract_answer, grade, make_problem, make_problems
from metalens.tasks.words import WordProblem, make_word_problem, make_word_problems

__all__ = [
    "LEVELS", "Problem", "WordProblem", "extract_answer", "generation_accuracy", "grade", "make_problem",
    "make_problems", "make_word_problem", "make_word_problems",
]
