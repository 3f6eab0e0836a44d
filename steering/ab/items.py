"""A/B behaviour items (model-written evaluations), CAA contrastive pairs, and judge-free propensity.

An item is a question with "(A)"/"(B)" choices and the letter that matches the behaviour
(`answer_matching_behavior`, e.g. " (A)"), as in Anthropic's model-written-evaluations JSONL.
Following contrastive activation addition (Rimsky et al. 2024, "Steering Llama 2 via Contrastive
Activation Addition"), a pair is the question followed by the matching letter vs by the other
letter, read at the letter token; with a chat template the question is the user turn and "(X" opens
the assistant turn. Propensity is the logit difference of the matching letter over the other (or its
probability normalised over the two), with a vector added from the answer's "(" on or everywhere.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

import metalens
from metalens.generate import chat_prompts
from metalens.stats import mean_ci, wilson_ci

LETTERS = ("A", "B")
_LETTER = re.compile(r"\(\s*([A-Z])\s*\)")
_CHOICE_LINE = re.compile(r"^(\s*)\(([AB])\)(.*)$")


@dataclass(frozen=True)
class ABItem:
    """One two-choice question and the letter ("A"/"B") whose answer shows the behaviour."""

    question: str  # with its "(A) ... (B) ..." choices
    matching: str  # "A" or "B"

    @property
    def other(self) -> str:
        """The letter that does not show the behaviour."""
        return "B" if self.matching == "A" else "A"


def _letter(value, where: str) -> str:
    found = _LETTER.search(str(value))
    if not found:
        raise ValueError(f"{where}: answer {value!r} names no choice letter; expected e.g. ' (A)' or ' (B)'.")
    return found.group(1)


def read_ab(path) -> list[ABItem]:
    """Items from a model-written-evaluations JSONL: `question`, `answer_matching_behavior`,
    `answer_not_matching_behavior` (e.g. " (A)"). A question without both "(A)" and "(B)" is refused;
    items with more choices (a "(C)", or an answer C, D ...) are skipped with a warning."""
    records = metalens.read_jsonl(path, required=("question", "answer_matching_behavior",
                                                  "answer_not_matching_behavior"))
    items, skipped = [], 0
    for line, record in enumerate(records, 1):
        where = f"{path}, record {line}"
        matching = _letter(record["answer_matching_behavior"], where)
        other = _letter(record["answer_not_matching_behavior"], where)
        if matching == other:
            raise ValueError(f"{where}: matching and not-matching answers are both ({matching}).")
        question = record["question"].strip()
        if "(A)" not in question or "(B)" not in question:
            raise ValueError(f"{where}: the question has no '(A)' and '(B)' choices; steer-ab needs two-choice items.")
        if {matching, other} != set(LETTERS) or "(C)" in question:
            skipped += 1
            continue
        items.append(ABItem(question, matching))
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} of {len(records)} items with more than two choices.", stacklevel=2)
    if not items:
        raise ValueError(f"{path} holds no two-choice (A)/(B) items.")
    return items


def split_items(items: list[ABItem], fractions=(0.6, 0.2, 0.2), seed: int = 0):
    """(train, validation, test): items shuffled with `seed` and cut by `fractions`; a question that
    appears twice stays in one split. Each split gets at least one item."""
    groups: dict[str, list[ABItem]] = {}
    for item in items:
        groups.setdefault(item.question, []).append(item)
    keys = list(groups)
    if len(keys) < 3:
        raise ValueError(f"Need at least 3 distinct questions for train/validation/test splits; got {len(keys)}.")
    order = np.random.default_rng(seed).permutation(len(keys))
    total = sum(fractions)
    n_train = min(max(1, round(len(keys) * fractions[0] / total)), len(keys) - 2)
    n_val = min(max(1, round(len(keys) * fractions[1] / total)), len(keys) - n_train - 1)
    cuts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return tuple([item for i in cut for item in groups[keys[i]]] for cut in cuts)


def swap_choices(item: ABItem) -> ABItem | None:
    """The item with the texts of choices (A) and (B) exchanged (so the other letter matches), or
    None when its choices are not one line each."""
    lines = item.question.split("\n")
    at = {}
    for i, line in enumerate(lines):
        found = _CHOICE_LINE.match(line)
        if found:
            if found.group(2) in at:
                return None
            at[found.group(2)] = (i, found)
    if set(at) != set(LETTERS):
        return None
    (ia, a), (ib, b) = at["A"], at["B"]
    lines[ia], lines[ib] = f"{a.group(1)}(A){b.group(3)}", f"{b.group(1)}(B){a.group(3)}"
    return ABItem("\n".join(lines), item.other)


def balance(items: list[ABItem], seed: int = 0) -> list[ABItem]:
    """Items where as many match with (A) as with (B): some of the majority get their choices swapped
    (`swap_choices`), and if too few can be swapped the surplus is dropped. Without this the
    mean difference would also carry "letter A vs letter B"."""
    rng = np.random.default_rng(seed)
    items = list(items)
    n_a = sum(i.matching == "A" for i in items)
    major = "A" if n_a > len(items) - n_a else "B"
    surplus = abs(2 * n_a - len(items))
    candidates = [k for k in rng.permutation(len(items)) if items[k].matching == major]
    flipped = 0
    for k in candidates:
        if flipped >= surplus // 2:
            break
        swapped = swap_choices(items[k])
        if swapped is not None:
            items[k], flipped = swapped, flipped + 1
    n_a = sum(i.matching == "A" for i in items)
    excess = abs(2 * n_a - len(items))
    if excess > 1:  # drop the rest of the surplus
        major = "A" if 2 * n_a > len(items) else "B"
        drop = {int(k) for k in [k for k in rng.permutation(len(items)) if items[k].matching == major][:excess]}
        items = [it for k, it in enumerate(items) if k not in drop]
    return items


def strip_choices(question: str) -> str:
    """The question without its choices (everything from "Choices:" or the first "(A)" line on)."""
    cut = re.split(r"\n\s*Choices:|\n\s*\(A\)", question, maxsplit=1)[0]
    return cut.strip()


def answer_prefix(model, question: str, chat: bool | None = None) -> str:
    """Text up to the answer letter: the chat prompt (question as the user turn) plus "(", or for a
    model without a chat template, the question then "\\n\\nAnswer: ("."""
    chat = model.is_chat if chat is None else chat
    if chat:
        return chat_prompts(model, [question])[0] + "("
    return f"{question}\n\nAnswer: ("


def caa_pairs(model, items: list[ABItem], chat: bool | None = None) -> tuple[list[str], list[str]]:
    """(positive, negative) texts: each question answered with the matching letter / the other letter.

    Train on them with `positions="last"` (the letter token), as in CAA."""
    positive = [answer_prefix(model, i.question, chat) + i.matching for i in items]
    negative = [answer_prefix(model, i.question, chat) + i.other for i in items]
    return positive, negative


def _requests(a: list[int], b: list[int]):
    """Rows to run and where to read them: (ids, [(position, token, letter 0/1), ...])."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == 0:
        raise ValueError("The two answers share no prefix tokens; cannot score them.")
    if len(a) == len(b) == k + 1:  # the usual case: one forward pass, the letters differ in the last token
        return [(a[:k], [(k - 1, a[k], 0), (k - 1, b[k], 1)])]
    return [(ids, [(p - 1, ids[p], which) for p in range(k, len(ids))]) for which, ids in ((0, a), (1, b))]


METRICS = ("logit-diff", "prob")  # what propensity reads; see `propensity`
STEER_POSITIONS = ("response", "all")  # where an edit factory steers; see `letter_logprobs`


def response_start(model, prefix: str) -> int:
    """Index of the token that holds the answer's "(" in `prefix` (which ends with it): the first token
    where the prefix's ids and those of the prefix without its "(" part ways."""
    full = model.tokenizer(prefix)["input_ids"]
    head = model.tokenizer(prefix[:prefix.rindex("(")])["input_ids"]
    k = 0
    while k < min(len(full), len(head)) and full[k] == head[k]:
        k += 1
    return min(k, len(full) - 1)


def letter_logprobs(model, items: list[ABItem], edits=None, chat: bool | None = None, batch_size: int = 8,
                    positions: str = "all") -> np.ndarray:
    """[n_items, 2]: log-probability of answering "(A" and "(B" (summed over the tokens the two differ in).

    edits: None, a `{site: fn}` dict active at every position, or a factory `start -> {site: fn}` (e.g.
    `lambda start: vector.edits(model, s, start=start)`) given each row's first steered position:
    with positions="response" the answer's "(" token (the question is left alone, as CAA steers from
    the end of the instruction), with "all" position 0."""
    if positions not in STEER_POSITIONS:
        raise ValueError(f"positions must be one of {STEER_POSITIONS}, not {positions!r}.")
    if isinstance(edits, dict) and edits and positions != "all":
        raise ValueError("A dict of edits steers every position: pass a factory start -> edits for "
                         f"positions={positions!r}.")
    owners, prompts, reads_at, tokens, letters, starts = [], [], [], [], [], []
    for n, item in enumerate(items):
        prefix = answer_prefix(model, item.question, chat)
        first = response_start(model, prefix) if positions == "response" else 0
        a, b = (model.tokenizer(prefix + x)["input_ids"] for x in LETTERS)
        for ids, reads in _requests(a, b):
            owners.append(n)
            prompts.append(ids)
            reads_at.append([p for p, _, _ in reads])
            tokens.append([t for _, t, _ in reads])
            letters.append([which for _, _, which in reads])
            starts.append(min(first, len(ids) - 1))
    if callable(edits):
        edits = edits(starts)
    reads = metalens.next_token_logprobs(model, prompts, tokens, positions=reads_at, edits=edits,
                                         batch_size=batch_size)
    out = np.zeros((len(items), 2))
    for n, logp, which in zip(owners, reads.logprobs, letters):  # logp: [n_reads, n_reads]; read j asks token j
        for j, letter in enumerate(which):
            out[n, letter] += float(logp[j, j])
    return out


def propensity(model, items: list[ABItem], edits=None, chat: bool | None = None, batch_size: int = 8,
               metric: str = "prob", positions: str = "all") -> np.ndarray:
    """[n_items]: how strongly each item's answer leans to the matching letter.

    metric "logit-diff": log p(matching) - log p(other) (the logit difference when the letters differ
    in one token; 0 = indifferent); "prob": p(matching) / (p(A) + p(B)) (0.5 = indifferent).
    edits and positions as in `letter_logprobs`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}.")
    logp = letter_logprobs(model, items, edits, chat, batch_size, positions)  # [n, 2]
    diff_a = logp[:, 0] - logp[:, 1]  # A over B
    diff = np.array([d if i.matching == "A" else -d for i, d in zip(items, diff_a)])
    return diff if metric == "logit-diff" else 1.0 / (1.0 + np.exp(-diff))


def indifferent(metric: str) -> float:
    """The propensity of an item with no preference: 0 for logit-diff, 0.5 for prob."""
    return 0.0 if metric == "logit-diff" else 0.5


def slopes(p: np.ndarray, strengths) -> np.ndarray:
    """[n_items]: least-squares slope of each item's propensity (row of `p` [n_items, n_strengths])
    per unit strength."""
    x = np.asarray(strengths, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError(f"A slope needs at least two different strengths, got {list(x)}.")
    xc = x - x.mean()
    return (np.asarray(p, dtype=float) - np.asarray(p, dtype=float).mean(1, keepdims=True)) @ xc / (xc @ xc)


def steerability(p: np.ndarray, strengths) -> dict:
    """Mean per-item slope of propensity per unit strength, with a t-interval over items."""
    return mean_ci(slopes(p, strengths)).to_dict()


def flips(p: np.ndarray, strengths, threshold: float = 0.5) -> list[dict]:
    """Per strength: share of items whose preferred answer (propensity > `threshold`: 0.5 for "prob",
    0 for "logit-diff", see `indifferent`) differs from strength 0's, with a Wilson interval."""
    strengths = [float(s) for s in strengths]
    if 0.0 not in strengths:
        raise ValueError(f"Flips are counted against strength 0, which is not in {strengths}.")
    prefer = np.asarray(p) > threshold  # [n_items, n_strengths]
    base = prefer[:, strengths.index(0.0)]
    rows = []
    for j, s in enumerate(strengths):
        ci = wilson_ci(int((prefer[:, j] != base).sum()), len(base))
        rows.append({"strength": s, "flip_share": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n})
    return rows

