"""Refinement rounds for a rule book (`metalens steer --rounds`): judge steered responses, turn failures
into negatives, retrain the rule's vector, raise its strength or add a child rule.

This is the rule workflow's own loop over one rule. MENTOR as its paper describes it (a rule graph
grown from self-assessment, retrieved rule vectors) is `metalens.steering.mentor`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import metalens
from metalens.steering.generate import generate
from metalens.steering.rules.checkers import adherence
from metalens.steering.rules.library import Rule
from metalens.steering.rules.rulebook import RuleBook
from metalens.steering.vector import train_steering_vector

# A judge sees prompts, responses and the rule; for each response it returns whether it follows
# the rule, or (follows, corrected_response_or_None).
Judge = Callable[[list[str], list[str], Rule], list]

JUDGE_PROMPT = (
    "Rule: {rule}.\nSomeone asked: {prompt}\nThe reply was: {response}\n"
    "Put yourself in the place of the person who reads this reply and think about what follows from it. "
    "Does the reply follow the rule? Answer Yes or No.\nAnswer:"
)


def checker_judge(checker) -> Judge:
    """A judge that asks a rule checker (no corrections)."""
    return lambda prompts, responses, rule: checker(responses)


def model_judge(model, template: str = JUDGE_PROMPT) -> Judge:
    """A judge that prompts the (unsteered) model itself and compares its ' Yes' and ' No' logits."""
    tok = model.tokenizer
    yes, no = tok(" Yes", add_special_tokens=False)["input_ids"][-1], tok(" No", add_special_tokens=False)["input_ids"][-1]

    def judge(prompts, responses, rule):
        texts = [template.format(rule=rule.text.rstrip("."), prompt=p, response=r) for p, r in zip(prompts, responses)]
        logp = metalens.next_token_logprobs(model, texts, [yes, no], batch_size=8).stacked()  # [n, 2]
        return (logp[:, 0] > logp[:, 1]).tolist()

    return judge


def _verdicts(raw) -> list[tuple[bool, str | None]]:
    out = []
    for item in raw:
        if isinstance(item, tuple):
            out.append((bool(item[0]), item[1] if len(item) > 1 else None))
        else:
            out.append((bool(item), None))
    return out


@dataclass
class RefineLog:
    """One row per round: validation adherence, how many responses were flagged, what was done.

    `best_round` is the round whose rule book the loop kept (the best validation adherence).
    """

    rows: list[dict] = field(default_factory=list)
    best_round: int = 0

    def adherence_by_round(self) -> list[float]:
        """Validation adherence after each round (round 0: before the loop)."""
        return [r["adherence"] for r in self.rows]


def _snapshot(book: RuleBook) -> dict:
    return {name: copy.deepcopy(entry) for name, entry in book.entries.items()}


def refine_rules(model, book: RuleBook, rule_name: str, positive: list[str], negative: list[str], train_prompts: list[str],
           validation_prompts: list[str], checker, judge: Judge | None = None, rounds: int = 3, target: float = 0.9,
           strength_step: float = 1.5, patience: int = 2, max_new_tokens: int = 24) -> RefineLog:
    """Run `rounds` of: steered generation on `train_prompts`, judging, and growing the book.

    Flagged responses become negatives (their corrections, if the judge gives any, positives)
    and the rule's vector is retrained on the enlarged pairs; when validation adherence did not
    improve, its strength is raised by `strength_step`; after `patience` rounds without
    improvement a more specific child rule, trained against the accumulated failures, is
    added beneath it. Every decision (raise strength, add a child, which round's book to keep)
    reads adherence on `validation_prompts` only; the book is left in the state of the best
    validation round. Its adherence on `validation_prompts` is chosen, hence optimistic: report
    the kept book on prompts neither list holds (`run_steer` does).
    """
    overlap = set(train_prompts) & set(validation_prompts)
    if overlap:
        raise ValueError(f"{len(overlap)} prompt(s) are in both train_prompts and validation_prompts, e.g. "
                         f"{sorted(overlap)[0]!r}: pass disjoint lists.")
    entry = book[rule_name]
    judge = judge or checker_judge(checker)
    positive, negative = list(positive), list(negative)

    def validate():
        return adherence(checker(generate(model, validation_prompts, book, max_new_tokens=max_new_tokens)))

    score = validate()
    log = RefineLog([{"round": 0, "adherence": score.rate, "low": score.low, "high": score.high, "n": score.n,
                      "flagged": None, "action": "start", "strength": entry.strength, "n_rules": len(book)}])
    best, best_state, stale, failures = score.rate, _snapshot(book), 0, []
    for k in range(1, rounds + 1):
        responses = generate(model, train_prompts, book, max_new_tokens=max_new_tokens)
        verdicts = _verdicts(judge(train_prompts, responses, entry.rule))
        flagged = [(p, r, fix) for p, r, (ok, fix) in zip(train_prompts, responses, verdicts) if not ok]
        actions = []
        if flagged:
            failures += [f"{p} {r}" for p, r, _ in flagged]
            negative += [f"{p} {r}" for p, r, _ in flagged]
            positive += [f"{p} {fix}" for p, _, fix in flagged if fix]
            entry.vector = train_steering_vector(model, positive, negative, layers=entry.vector.layers, method="mean_diff",
                                 positions=entry.vector.positions, seed=entry.vector.seed)
            actions.append(f"retrained on {len(positive)}+/{len(negative)}-")
        if stale >= 1 and flagged:
            entry.strength *= strength_step
            actions.append(f"strength -> {entry.strength:g}")
        if stale >= patience and failures:
            child = Rule(name=f"{rule_name}.{k}", text=f"{entry.rule.text}, even in replies like the ones that failed",
                         keywords=entry.rule.keywords, regex=entry.rule.regex, forbid=entry.rule.forbid, parent=rule_name)
            vector = train_steering_vector(model, positive, failures, layers=entry.vector.layers, positions=entry.vector.positions)
            book.add(child, vector, strength=entry.strength / 2)
            actions.append(f"child rule {child.name}")
            stale = 0
        score = validate()
        if score.rate > best:
            best, best_state, stale, log.best_round = score.rate, _snapshot(book), 0, k
        else:
            stale += 1
        entry.history.append({"round": k, "flagged": len(flagged), "adherence": score.rate})
        log.rows.append({"round": k, "adherence": score.rate, "low": score.low, "high": score.high, "n": score.n,
                         "flagged": len(flagged), "action": "; ".join(actions) or "none",
                         "strength": entry.strength, "n_rules": len(book)})
        if not flagged and score.rate >= target:
            break
    book.entries = best_state  # the best validation round's rules, vectors and strengths
    for row in log.rows:
        row["kept"] = row["round"] == log.best_round
    return log
