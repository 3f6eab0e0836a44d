"""Short word problems with difficulty levels and worked solutions, graded like arithmetic.

A second generator beside `arithmetic`, for training a predictor on one kind of problem and
evaluating it on another. Answers are integers; solutions end "The answer is N." so
`arithmetic.extract_answer` / `grade` read them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from metalens.tasks.arithmetic import Problem, draw_distinct, extract_answer

NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo")
ITEMS = ("apples", "pens", "cards", "shells", "stamps", "marbles", "books", "coins")

# Difficulty levels: how many steps and how large the numbers are.
LEVELS = {
    1: "one addition, numbers up to 9",
    2: "one subtraction, numbers up to 20",
    3: "two steps (add then take away), numbers up to 20",
    4: "groups: a x b plus c, numbers up to 9",
    5: "three steps (groups, then add, then take away), numbers up to 12",
}


@dataclass(frozen=True)
class WordProblem(Problem):
    """A word problem (its text in `question`), its integer answer, the worked steps and its level."""

    @property
    def text(self) -> str:
        """The problem's wording, e.g. "Ann has 3 apples and buys 4 more. How many apples does Ann have?"."""
        return self.question

    @property
    def prompt(self) -> str:
        return f"Q: {self.question}\nA:"


def make_word_problem(rng: random.Random, level: int) -> WordProblem:
    """One random word problem at `level` (see LEVELS)."""
    if level not in LEVELS:
        raise ValueError(f"Unknown word-problem level {level}; levels are {sorted(LEVELS)}.")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if level == 1:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return WordProblem(f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
                           a + b, (f"{a} + {b} = {a + b}",), level)
    if level == 2:
        a = rng.randint(2, 20)
        b = rng.randint(1, a - 1)
        return WordProblem(f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
                           a - b, (f"{a} - {b} = {a - b}",), level)
    if level == 3:
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        c = rng.randint(1, a + b)
        return WordProblem(f"{name} has {a} {item}, finds {b} more, then loses {c}. How many {item} does "
                           f"{name} have?", a + b - c, (f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"), level)
    if level == 4:
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 9)
        return WordProblem(f"{name} buys {a} boxes of {b} {item} and has {c} {item} already. How many {item} "
                           f"does {name} have?", a * b + c, (f"{a} * {b} = {a * b}", f"{a * b} + {c} = {a * b + c}"),
                           level)
    a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 12)
    d = rng.randint(1, a * b + c)
    total = a * b + c - d
    return WordProblem(f"{name} buys {a} packs of {b} {item}, gets {c} more as a gift, then gives {d} to a "
                       f"friend. How many {item} does {name} have?", total,
                       (f"{a} * {b} = {a * b}", f"{a * b} + {c} = {a * b + c}", f"{a * b + c} - {d} = {total}"), level)


def make_word_problems(n: int, levels=(1, 2, 3), seed: int = 0) -> list[WordProblem]:
    """`n` distinct word problems cycling through `levels`, reproducible from `seed`."""
    return draw_distinct(make_word_problem, n, levels, seed)


def grade(problem: WordProblem, completion: str) -> bool:
    """True when the completion's extracted answer equals the problem's (the arithmetic grader)."""
    return extract_answer(completion) == problem.answer
