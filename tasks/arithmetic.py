"""Arithmetic problems with difficulty levels, step-by-step solutions and a grader.

Shared by the circuits tasks, the post-training run and the introspection heads.
"""
from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

# Difficulty levels: how many operands, how large, which operators.
# Level 0 (sums of two addends 0-5) is for models that solve under 10 % at level 1: a comparison of
# samplers needs questions the model sometimes gets right and sometimes wrong. Its zero addends keep
# 11 of its 36 questions apart from level 1's (questions are distinct across levels), so 24 or more
# can be drawn beside level 1. Levels without `min_value` draw from 1.
LEVELS = {
    0: dict(n_operands=2, min_value=0, max_value=5, ops="+"),
    1: dict(n_operands=2, max_value=9, ops="+"),
    2: dict(n_operands=2, max_value=20, ops="+-"),
    3: dict(n_operands=3, max_value=9, ops="+-*"),
    4: dict(n_operands=3, max_value=20, ops="+-*"),
    5: dict(n_operands=4, max_value=30, ops="+-*"),
}
_ANSWER_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    """An arithmetic expression, its answer and a step-by-step solution."""

    question: str  # e.g. "3 + 4 * 2"
    answer: int
    steps: tuple[str, ...]  # e.g. ("4 * 2 = 8", "3 + 8 = 11")
    level: int

    @property
    def prompt(self) -> str:
        return f"Q: What is {self.question}?\nA:"

    @property
    def solution(self) -> str:
        """Worked solution that ends in 'The answer is N.'."""
        steps = " ".join(f"{s}." for s in self.steps)
        return f" {steps} The answer is {self.answer}."

    def to_dict(self) -> dict:
        """JSON-ready fields, plus the prompt and worked solution as the model sees them."""
        return {**asdict(self), "steps": list(self.steps), "prompt": self.prompt, "solution": self.solution}

    @classmethod
    def from_dict(cls, data: dict) -> "Problem":
        """The problem `to_dict` wrote (extra keys ignored)."""
        return cls(data["question"], int(data["answer"]), tuple(data["steps"]), int(data["level"]))


def _solve(tokens: list) -> tuple[int, list[str]]:
    """Evaluate with * before + and -, left to right, recording each step."""
    tokens, steps = list(tokens), []
    for ops in ("*", "+-"):
        i = 1
        while i < len(tokens):
            if tokens[i] in ops:
                a, op, b = tokens[i - 1], tokens[i], tokens[i + 1]
                value = a * b if op == "*" else a + b if op == "+" else a - b
                steps.append(f"{a} {op} {b} = {value}")
                tokens[i - 1 : i + 2] = [value]
            else:
                i += 2
    return tokens[0], steps


def make_problem(rng: random.Random, level: int) -> Problem:
    """One random problem at `level` (see LEVELS)."""
    if level not in LEVELS:
        raise ValueError(f"Unknown level {level}; levels are {sorted(LEVELS)}.")
    spec = LEVELS[level]
    low = spec.get("min_value", 1)
    tokens: list = [rng.randint(low, spec["max_value"])]
    for _ in range(spec["n_operands"] - 1):
        tokens += [rng.choice(spec["ops"]), rng.randint(low, spec["max_value"])]
    answer, steps = _solve(tokens)
    if not steps:
        steps = [f"{tokens[0]} = {answer}"]
    return Problem(" ".join(map(str, tokens)), answer, tuple(steps), level)


def make_problems(n: int, levels=(1, 2, 3), seed: int = 0) -> list[Problem]:
    """`n` distinct problems cycling through `levels`, reproducible from `seed`."""
    return draw_distinct(make_problem, n, levels, seed)


def draw_distinct(make, n: int, levels, seed: int) -> list:
    """`n` problems `make(rng, level)` with distinct questions, cycling through `levels`, reproducible from `seed`."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(n * 50):
        problem = make(rng, levels[len(out) % len(levels)])
        if problem.question not in seen:
            seen.add(problem.question)
            out.append(problem)
        if len(out) == n:
            return out
    raise ValueError(f"Could not draw {n} distinct problems at levels {levels}: ask for fewer.")


def extract_answer(text: str) -> int | None:
    """The number right after the last 'answer is', else the last number in `text`, else None.

    The last number, not the first: "3 + 4 = 7." states its answer at the end, and reading the
    first number would grade "7 * 1 = 8" right for the problem 7 * 1.
    """
    if "answer is" in text:
        match = _ANSWER_RE.search(text.rsplit("answer is", 1)[1])
        if match:
            return int(match.group())
    found = _ANSWER_RE.findall(text)
    return int(found[-1]) if found else None


def grade(problem: Problem, completion: str) -> bool:
    """True when the completion's extracted answer equals the problem's."""
    return extract_answer(completion) == problem.answer
