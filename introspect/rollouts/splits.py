"""Splits of rollout questions into train and test: whole units of questions, never single samples."""
from __future__ import annotations

import random
import re

_ARITHMETIC = re.compile(r"What is ([-\d\s+*]+)\?")


def problem_unit(prompt: str) -> str:
    """The unit a question can leak through: for "What is a op b ...?" the unordered multiset of its
    operands, so commuted twins (3 + 4, 4 + 3) fall on one side of every split; else the prompt."""
    match = _ARITHMETIC.search(prompt)
    if match is None:
        return prompt
    return "operands " + " ".join(sorted(re.findall(r"\d+", match.group(1)), key=int))


def problem_units(records: list[dict]) -> dict[int, int]:
    """Task index -> id of its unit (`problem_unit`): the groups splits, folds and bootstraps respect."""
    ids: dict[str, int] = {}
    return {r["task_index"]: ids.setdefault(problem_unit(r["prompt"]), len(ids)) for r in records}


def split_tasks(records: list[dict], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) task indices: whole units of questions (`problem_units`) are held out together,
    never single samples or one of two commuted twins."""
    unit_of = problem_units(records)
    units = sorted(set(unit_of.values()))
    random.Random(seed).shuffle(units)
    n_test = min(len(units) - 1, max(1, round(test_fraction * len(units))))
    held = set(units[:n_test])
    tasks = sorted(unit_of)
    return [t for t in tasks if unit_of[t] not in held], [t for t in tasks if unit_of[t] in held]
