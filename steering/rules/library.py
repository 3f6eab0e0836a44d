"""Rules in plain language, the shipped rule library, and contrastive pairs for a rule."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import metalens
from metalens.steering.io.records import record_lines

DATA = Path(__file__).resolve().parents[1] / "data"  # steering/data, shared by the products

# Template pairs for a rule given alone: the same prompt with the rule stated as an
# instruction to follow, versus stated as one to ignore. Read at the last token, their
# difference is the "rule is in force" state the model would be in had it been told the rule
# (an in-context instruction turned into a vector, in the spirit of in-context vectors).
FOLLOW = "Instruction: {rule}. The reply below follows this instruction.\n{prompt}"
VIOLATE = "Instruction: {rule}. The reply below ignores this instruction.\n{prompt}"
DEFAULT_PROMPTS = [
    "Tell me about your day.", "What do you think of the city?", "Describe your favourite place.",
    "Write a note to a friend.", "What did you do last weekend?", "Give me some advice.",
    "What is your job like?", "Tell me a story.", "What should I do this afternoon?",
    "How was the meeting?", "What are you reading?", "Describe your neighbour.",
]


@dataclass
class Rule:
    """A rule and what decides adherence: keywords (any present), a regex to match, a regex to avoid.

    `prompts` are held-out prompts to evaluate on (default: the shipped generic ones).
    """

    name: str
    text: str
    keywords: list[str] = field(default_factory=list)
    regex: str | None = None
    forbid: str | None = None
    parent: str | None = None
    prompts: list[str] | None = None

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dict(self.__dict__)


def heldout_prompts(rule: Rule | None = None) -> list[str]:
    """Held-out evaluation prompts for `rule` (its own, else the shipped generic ones)."""
    if rule is not None and rule.prompts:
        return list(rule.prompts)
    return metalens.read_texts(DATA / "prompts_heldout.txt")


def library() -> dict[str, Rule]:
    """The shipped example rules, by name (each has contrastive pairs in steering/data/pairs)."""
    rules = {}
    for record in metalens.read_jsonl(DATA / "rules.jsonl", required=("name", "rule")):
        prompts = record.get("prompts")
        if isinstance(prompts, str):
            prompts = metalens.read_texts(DATA / prompts)
        rules[record["name"]] = Rule(
            name=record["name"], text=record["rule"], keywords=record.get("keywords", []),
            regex=record.get("regex"), forbid=record.get("forbid"), parent=record.get("parent"), prompts=prompts,
        )
    return rules


def find_rule(name_or_text: str) -> Rule:
    """A shipped rule by name or by its exact text; otherwise a new rule with no checker patterns."""
    rules = library()
    if name_or_text in rules:
        return rules[name_or_text]
    for rule in rules.values():
        if rule.text.lower().rstrip(".") == name_or_text.lower().rstrip("."):
            return rule
    slug = "".join(c if c.isalnum() else "_" for c in name_or_text.lower()).strip("_")[:40] or "rule"
    return Rule(name=slug, text=name_or_text)


def read_pairs(path: str | Path) -> tuple[list[str], list[str]]:
    """(positives, negatives) from a JSONL of {"positive", "negative"} (optional "prompt" is prefixed).

    Every value must be a non-empty string; anything else is refused naming file:line.
    """
    records = metalens.read_jsonl(path, required=("positive", "negative"))
    for line, record in zip(record_lines(path), records):
        for key in ("positive", "negative", "prompt"):
            value = record.get(key)
            if key == "prompt" and value is None:
                continue
            if not isinstance(value, str) or (key != "prompt" and not value.strip()):
                raise ValueError(f"{path}:{line}: \"{key}\" is {json.dumps(value)}; each pair needs non-empty "
                                 "strings for \"positive\" and \"negative\" (and a string \"prompt\" if given).")
    join = lambda r, k: f"{r['prompt']} {r[k]}" if r.get("prompt") else r[k]  # noqa: E731
    return [join(r, "positive") for r in records], [join(r, "negative") for r in records]


def template_pairs(rule_text: str, prompts: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Pairs built from the rule's text alone: follow-vs-ignore instructions on the same prompts.

    Train on them with positions="last" (the texts share everything but the instruction).
    """
    if not rule_text or not rule_text.strip():
        raise ValueError("The rule is empty: write it in plain language, e.g. 'Always talk about the ocean'.")
    prompts = list(prompts or DEFAULT_PROMPTS)
    rule_text = rule_text.strip().rstrip(".")
    return ([FOLLOW.format(rule=rule_text, prompt=p) for p in prompts],
            [VIOLATE.format(rule=rule_text, prompt=p) for p in prompts])


def pairs_for_rule(rule: Rule | str, pairs_path: str | Path | None = None) -> tuple[list[str], list[str], str]:
    """(positives, negatives, positions) for a rule: user pairs, else shipped pairs, else templates."""
    rule = find_rule(rule) if isinstance(rule, str) else rule
    if pairs_path is not None:
        return (*read_pairs(pairs_path), "mean")
    shipped = DATA / "pairs" / f"{rule.name}.jsonl"
    if shipped.exists():
        return (*read_pairs(shipped), "mean")
    return (*template_pairs(rule.text), "last")
