"""The behavioural battery: forced-choice items, then, in the same context, confidence, KEEP/WITHDRAW and BET/PASS.

In the spirit of the Metacognitive Monitoring Battery: after each answer the model is asked to
rate its confidence, to keep or withdraw the answer, and to bet on it or pass. Every reading
is the probability of the option tokens at one position (renormalised over the options): no
sampling, no judge. The model's answer is the option it gives the higher probability.

Arithmetic items are two-choice (the answer beside a near-miss distractor) rather than graded
greedy generations: gemma-3-270m solves few problems when it must generate them (about 20 % at
level 1), so most items would be wrong for every signal alike, and a generation costs tens of
forward passes where a choice costs one.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import metalens
from metalens.sites import FINAL_NORM, resid_post
from metalens.tasks.arithmetic import draw_distinct, make_problem, make_problems

LETTERS = "ABCDEFGH"
FACTS = Path(__file__).parent / "data" / "facts.jsonl"
DISTRACTOR_OFFSETS = (-10, -2, -1, 1, 2, 10)  # near misses: the kind of slip a small model makes

# Each follow-up: (the question asked after the answer, the line the reply goes on, reply options
# as they follow that line). Options are renormalised over their first distinct tokens.
FOLLOW_UPS = {
    "confidence": ("How sure are you? Reply with a digit from 0 (surely wrong) to 9 (surely right).",
                   "Confidence:", tuple(str(d) for d in range(10))),
    "keep": ("Keep your answer or withdraw it? Reply KEEP or WITHDRAW.", "Decision:", ("KEEP", "WITHDRAW")),
    "bet": ("Bet on your answer? Win 1 point if it is right, lose 1 if it is wrong. Reply BET or PASS.", "Bet:",
            ("BET", "PASS")),
}
# Worked examples for base models: the format and what each reply means. Any even prefix is
# balanced: each pair holds a right answer kept and bet on and a wrong one withdrawn and passed,
# one shown as A and one as B.
SHOTS = [  # (question, choices, letter shown, its confidence, keep, bet)
    ("What is 2 + 2?", ("4", "5"), 0, "9", "KEEP", "BET"),
    ("How many wheels does a bicycle have?", ("two", "three"), 1, "1", "WITHDRAW", "PASS"),
    ("What colour is the sky on a clear day?", ("green", "blue"), 0, "2", "WITHDRAW", "PASS"),
    ("Which animal barks?", ("a fish", "a dog"), 1, "8", "KEEP", "BET"),
]


@dataclass(frozen=True)
class Item:
    """A forced-choice question with one right option (`answer` indexes `choices`)."""

    question: str
    choices: tuple[str, ...]
    answer: int
    source: str = "user"  # "arithmetic", "facts" or "user"
    level: int = 0  # difficulty (arithmetic level; 0 when not graded)
    group: str = ""  # near-copies share a group: splits and bootstraps keep it whole

    def __post_init__(self):
        if not 2 <= len(self.choices) <= len(LETTERS):
            raise ValueError(f"{self.question!r} has {len(self.choices)} choices; give 2 to {len(LETTERS)}.")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"{self.question!r}: answer {self.answer} is not an index into its {len(self.choices)} choices.")

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, data: dict) -> "Item":
        """The item `to_dict` wrote."""
        return cls(data["question"], tuple(data["choices"]), int(data["answer"]), data.get("source", "user"),
                   int(data.get("level", 0)), str(data.get("group", "")))


def arithmetic_items(n: int, levels=(1, 2, 3, 4), seed: int = 0, exclude=()) -> list[Item]:
    """`n` two-choice arithmetic items cycling through `levels`: the answer and a near-miss distractor,
    the right one first and second in turn *within each level* (alternating over all items would put
    it always first at some levels, so a model that always answers "A" would look good at exactly
    those). Group: the problem's operands (sorted). `exclude`: expressions ("3 + 4") never asked
    (e.g. a post-training run's problems): each is redrawn at its level."""
    rng = random.Random(seed)
    items, seen = [], {}
    exclude = set(exclude)
    if exclude:
        def make(gen, level):
            for _ in range(10_000):
                p = make_problem(gen, level)
                if p.question not in exclude:
                    return p
            raise ValueError(f"Level {level} has no arithmetic problem left outside the {len(exclude)} excluded: "
                             "drop that level or ask for fewer items.")
        problems = draw_distinct(make, n, tuple(levels), seed)
    else:
        problems = make_problems(n, levels=tuple(levels), seed=seed)
    for p in problems:
        wrong = p.answer + rng.choice(DISTRACTOR_OFFSETS)
        right = seen[p.level] = (seen.get(p.level, -1) + 1) % 2
        choices = (str(p.answer), str(wrong)) if right == 0 else (str(wrong), str(p.answer))
        operands = sorted(int(t) for t in p.question.split() if t.lstrip("-").isdigit())
        items.append(Item(f"What is {p.question}?", choices, right, "arithmetic", p.level,
                          "arith:" + ",".join(map(str, operands))))
    return items


def read_items(path: str | Path, source: str = "user") -> list[Item]:
    """Items of a JSONL file with `question`, `choices` and `answer` (an index or the right choice's text);
    optional `level` and `group` (default: each item its own group)."""
    from metalens.data import read_jsonl

    items = []
    for number, r in enumerate(read_jsonl(path, required=("question", "choices", "answer")), start=1):
        where = f"{path}:{number}"
        if not isinstance(r["question"], str) or not isinstance(r["choices"], list):
            raise ValueError(f"{where}: 'question' must be a string and 'choices' a list of options.")
        choices = tuple(str(c) for c in r["choices"])
        answer = r["answer"]
        if isinstance(answer, str) and not answer.isdigit():
            if answer not in choices:
                raise ValueError(f"{where}: answer {answer!r} is not one of the choices {list(choices)}.")
            answer = choices.index(answer)
        try:
            items.append(Item(r["question"], choices, int(answer), r.get("source", source), int(r.get("level", 0)),
                              str(r.get("group", f"{source}:{number}"))))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
    return items


def shipped_facts() -> list[Item]:
    """The 40 shipped two-choice world facts (analyses/data/facts.jsonl; the right option first on half)."""
    return read_items(FACTS, source="facts")


# --- prompts ---------------------------------------------------------------------------------


def _block(question: str, choices, letter: int | None = None) -> str:
    lines = [f"Question: {question}"] + [f"{LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:" + ("" if letter is None else f" {LETTERS[letter]}")


def _shot_prefix(kind: str | None, n_shots: int) -> str:
    parts = []
    for question, choices, letter, *replies in SHOTS[:n_shots]:
        text = _block(question, choices, letter)
        if kind is not None:
            ask, line, _ = FOLLOW_UPS[kind]
            text += f"\n{ask}\n{line} {dict(zip(FOLLOW_UPS, replies))[kind]}"
        parts.append(text + "\n\n")
    return "".join(parts)


def render(model, item: Item, kind: str = "answer", letter: int | None = None,
           n_shots: int = 2) -> tuple[str, tuple[str, ...]]:
    """(prompt text, reply options) asking `item` (kind "answer"), or, after answer `letter`, one follow-up
    ("confidence", "keep", "bet"). A chat model gets its template (zero-shot); a base model a plain
    transcript after `n_shots` worked examples."""
    if kind != "answer" and kind not in FOLLOW_UPS:
        raise ValueError(f"Unknown reading {kind!r}: use 'answer' or one of {list(FOLLOW_UPS)}.")
    if kind != "answer" and letter is None:
        raise ValueError(f"The {kind} follow-up needs the model's answer: pass letter=.")
    letters = tuple(LETTERS[: len(item.choices)])
    if model.is_chat:
        from metalens.generate import chat_prompts

        ask = ("Answer with the letter of the right option only.\n\n" + _block(item.question, item.choices)
               .removesuffix("\nAnswer:"))
        if kind == "answer":
            return chat_prompts(model, [ask])[0], letters
        follow, _, options = FOLLOW_UPS[kind]
        messages = [{"role": "user", "content": ask}, {"role": "assistant", "content": letters[letter]},
                    {"role": "user", "content": follow}]
        text = model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, options
    if kind == "answer":
        return _shot_prefix(None, n_shots) + _block(item.question, item.choices), tuple(f" {x}" for x in letters)
    follow, line, options = FOLLOW_UPS[kind]
    text = _shot_prefix(kind, n_shots) + _block(item.question, item.choices, letter) + f"\n{follow}\n{line}"
    return text, tuple(f" {o}" for o in options)


def option_reading(model, prompt: str, options) -> tuple[list[int], list[int]]:
    """(token ids to run, the id each option starts with at the next position).

    Options that start with a shared token (a space before digits, say) share it: it is appended
    to the prompt and the options are read where they first differ, so each option's probability
    is that of its first distinct token given the prompt and their common start.
    """
    tok = model.tokenizer
    base = tok(prompt)["input_ids"]
    tails = []
    for option in options:
        ids = tok(prompt + option)["input_ids"]
        if ids[: len(base)] != base:
            raise ValueError(f"Option {option!r} merges with the end of the prompt in {model.name}'s tokenizer: "
                             "end the prompt on a delimiter (':' or a newline).")
        tails.append(ids[len(base):])
    common = 0
    while all(len(t) > common + 1 for t in tails) and len({t[common] for t in tails}) == 1:
        common += 1
    firsts = [t[common] if len(t) > common else None for t in tails]
    if None in firsts or len(set(firsts)) != len(firsts):
        raise ValueError(f"Options {list(options)} do not start with distinct tokens in {model.name}'s tokenizer: "
                         "choose options that tokenise apart.")
    return base + tails[0][:common], firsts


# --- reading the model -----------------------------------------------------------------------


@dataclass
class Readout:
    """Option probabilities read at each item, and the residual stream where the probe reads.

    `probs[kind]` is [n_items, n_options] renormalised over the options (ragged for answers when
    items have different numbers of choices: a list of arrays); `mass[kind]` [n_items] the share of
    the full next-token distribution on the options (low: the model is not following the format).
    """

    choice: np.ndarray  # [n] the option the model prefers
    correct: np.ndarray  # [n] bool
    probs: dict[str, list]
    mass: dict[str, np.ndarray]
    resid: torch.Tensor  # [n, n_layers, d_model] at the last token of the `probe_at` prompt
    answer_hidden: torch.Tensor  # [n, d_model] final-norm state predicting the answer (reward heads read it)
    examples: dict[str, str] = field(default_factory=dict)  # the first item's prompts, per reading

    def score(self, kind: str) -> np.ndarray:
        """Per-item score, higher when the model signals it is right: P(chosen answer), expected
        confidence / 9, P(KEEP), P(BET)."""
        if kind == "answer":
            return np.array([p[c] for p, c in zip(self.probs["answer"], self.choice)])
        p = np.asarray(self.probs[kind])
        if kind == "confidence":
            return p @ np.arange(p.shape[1]) / (p.shape[1] - 1)
        return p[:, 0]


def read_options(model, readings: list[tuple[list[int], list[int]]], sites=(), batch_size: int = 8,
                 desc: str = "read", progress: bool = False):
    """For each (ids, option ids): option probabilities renormalised [n_options], their mass in the
    full distribution, and the activations at `sites` at the last token ({site: [n, d_model]})."""
    reads = metalens.next_token_logprobs(model, [ids for ids, _ in readings], [options for _, options in readings],
                                         sites=sites, batch_size=batch_size, progress=progress, desc=desc)
    picked = [lp[0] for lp in reads.logprobs]  # [n_options] log p under the full vocabulary, per item
    probs = [p.softmax(-1).numpy() for p in picked]
    mass = np.array([float(p.exp().sum()) for p in picked])
    return probs, mass, {s: torch.cat(v) for s, v in reads.acts.items()}


def read_battery(model, items: list[Item], *, n_shots: int = 2, probe_at: str = "keep", batch_size: int = 8,
                 progress: bool = True) -> Readout:
    """Ask every item, then each follow-up after the model's own answer; keep the residual stream
    at every block's output at the last token of the `probe_at` prompt ("answer" or a follow-up)."""
    if probe_at != "answer" and probe_at not in FOLLOW_UPS:
        raise ValueError(f"probe_at={probe_at!r}: use 'answer' or one of {list(FOLLOW_UPS)}.")
    layers = [resid_post(L) for L in range(model.n_layers)]
    examples, probs, mass = {}, {}, {}

    def run(kind, letters=None):
        rendered = [render(model, it, kind, None if letters is None else letters[i], n_shots)
                    for i, it in enumerate(items)]
        examples[kind] = rendered[0][0]
        readings = [option_reading(model, text, options) for text, options in rendered]
        sites = layers if kind == probe_at else []
        p, m, acts = read_options(model, readings, [*sites, FINAL_NORM] if kind == "answer" else sites, batch_size,
                                  kind, progress)
        probs[kind], mass[kind] = p, m
        return acts

    answer_acts = run("answer")
    choice = np.array([int(np.argmax(p)) for p in probs["answer"]])
    resid = None
    for kind in FOLLOW_UPS:
        acts = run(kind, choice)
        if kind == probe_at:
            resid = torch.stack([acts[s] for s in layers], 1)
    if probe_at == "answer":
        resid = torch.stack([answer_acts[s] for s in layers], 1)
    correct = choice == np.array([it.answer for it in items])
    return Readout(choice, correct, probs, mass, resid, answer_acts[FINAL_NORM], examples)
