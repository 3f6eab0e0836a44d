"""Accuracy of greedily generated answers to arithmetic problems (used by ablation checks), with an interval."""
from __future__ import annotations

import metalens
from metalens.stats import wilson_ci
from metalens.tasks.arithmetic import Problem, grade


def generation_accuracy(model, problems: list[Problem], max_new_tokens: int = 32, batch_size: int = 16) -> dict:
    """{'accuracy', 'low', 'high', 'correct', 'by_level', 'completions', 'n'}: graded greedy answers.

    Completions are one line: generation stops at the first newline, which saves most of the
    cost. Graded by metalens.tasks.arithmetic.grade (the number after 'answer is', else the last
    number); `low`/`high` is the Wilson 95 % interval over problems; `correct` is per problem, for
    paired comparisons on the same problems.
    """
    completions = metalens.generate(model, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                                    stop_strings=["\n"], batch_size=batch_size).texts
    correct = [bool(grade(p, c)) for p, c in zip(problems, completions)]
    by_level: dict[int, list[bool]] = {}
    for p, ok in zip(problems, correct):
        by_level.setdefault(p.level, []).append(ok)
    ci = wilson_ci(sum(correct), len(correct))
    return {
        "accuracy": ci.estimate if correct else 0.0, "low": ci.low, "high": ci.high, "correct": correct,
        "by_level": {lvl: sum(v) / len(v) for lvl, v in sorted(by_level.items())},
        "completions": completions,
        "n": len(problems),
    }
