"""Accuracy of greedily generated answers to arithmetic problems (used by ablation checks)."""
from __future__ import annotations

import re

import metalens
from metalens.tasks.arithmetic import Problem, grade

_NUM_RE = re.compile(r"-?\d+")


def last_number(text: str) -> int | None:
    """The last integer in `text` (lenient grading: a base model writes '5 + 9 = 14')."""
    found = _NUM_RE.findall(text)
    return int(found[-1]) if found else None


def generation_accuracy(model, problems: list[Problem], max_new_tokens: int = 32, batch_size: int = 16) -> dict:
    """{'accuracy', 'lenient_accuracy', 'by_level', 'completions', 'n'}: graded greedy answers.

    Completions are one line: generation stops at the first newline, which saves most of the
    cost. `accuracy` uses metalens.tasks.arithmetic.grade ('The answer is N', else the first
    number); `lenient_accuracy` also accepts the last number of the line.
    """
    completions = metalens.generate(model, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                                    stop_strings=["\n"], batch_size=batch_size).texts
    correct = [grade(p, c) for p, c in zip(problems, completions)]
    lenient = [ok or last_number(c) == p.answer for p, c, ok in zip(problems, completions, correct)]
    by_level: dict[int, list[bool]] = {}
    for p, ok in zip(problems, correct):
        by_level.setdefault(p.level, []).append(ok)
    return {
        "accuracy": sum(correct) / max(len(correct), 1),
        "lenient_accuracy": sum(lenient) / max(len(lenient), 1),
        "by_level": {lvl: sum(v) / len(v) for lvl, v in sorted(by_level.items())},
        "completions": completions,
        "n": len(problems),
    }
