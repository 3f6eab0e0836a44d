"""Contrast tasks: clean/corrupted prompt pairs with answer tokens and a scalar metric.

Each clean prompt has a corrupted twin of the same token length whose answer differs, so
activations can be patched position by position. Generators: arithmetic (multi-step
expressions and short word problems, from metalens.tasks.arithmetic), induction/copy, factual
recall; users supply their own pairs as JSONL.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from metalens.tasks.arithmetic import make_problem
from metalens.data import read_jsonl, write_jsonl

METRICS = ("logit_diff", "logprob", "kl")


@dataclass
class ContrastTask:
    """Clean/corrupted prompt pairs of equal token length, their answers, and the metric to score them.

    `metric` is 'logit_diff', 'logprob' or 'kl'.
    """

    name: str
    clean: list[str]
    corrupted: list[str]
    answers: list[str]  # the clean prompt's answer (its first token is scored)
    wrong: list[str]  # the corrupted prompt's answer
    metric: str = "logit_diff"

    def __post_init__(self):
        n = len(self.clean)
        if not n or any(len(x) != n for x in (self.corrupted, self.answers, self.wrong)):
            raise ValueError(f"Task '{self.name}': clean, corrupted, answers and wrong need the same non-zero length.")
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric '{self.metric}': use one of {METRICS}.")

    def __len__(self) -> int:
        return len(self.clean)

    def subset(self, n: int) -> "ContrastTask":
        """The first `n` pairs."""
        return ContrastTask(self.name, self.clean[:n], self.corrupted[:n], self.answers[:n], self.wrong[:n], self.metric)

    def select(self, indices) -> "ContrastTask":
        """The pairs at `indices`, in that order (repeats allowed, e.g. for a bootstrap resample)."""
        pick = [int(i) for i in indices]
        return ContrastTask(self.name, [self.clean[i] for i in pick], [self.corrupted[i] for i in pick],
                            [self.answers[i] for i in pick], [self.wrong[i] for i in pick], self.metric)

    def with_metric(self, metric: str) -> "ContrastTask":
        """The same pairs scored by another metric."""
        return ContrastTask(self.name, self.clean, self.corrupted, self.answers, self.wrong, metric)

    def save_jsonl(self, path) -> None:
        """Write one {"clean", "corrupted", "answer", "wrong"} line per pair (read back by `load_task`)."""
        write_jsonl(path, [{"clean": c, "corrupted": x, "answer": a, "wrong": w}
                           for c, x, a, w in zip(self.clean, self.corrupted, self.answers, self.wrong)])

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ContrastTask":
        """The task `to_dict` described."""
        return cls(**{k: data[k] for k in ("name", "clean", "corrupted", "answers", "wrong", "metric")})


def load_task(path, metric: str = "logit_diff", name: str | None = None) -> ContrastTask:
    """A task from JSONL lines {"clean", "corrupted", "answer", "wrong"} (wrong optional for kl)."""
    recs = read_jsonl(path, required=("clean", "corrupted", "answer"))
    return ContrastTask(name or str(path), [r["clean"] for r in recs], [r["corrupted"] for r in recs],
                [r["answer"] for r in recs], [r.get("wrong", r["answer"]) for r in recs], metric)


def answer_token(tokenizer, prompt: str, answer: str) -> int:
    """Id of the first token the model must produce after `prompt` to write `answer`."""
    full = tokenizer(prompt + answer)["input_ids"]
    pre = tokenizer(prompt)["input_ids"]
    if len(full) > len(pre) and full[: len(pre)] == pre:
        return full[len(pre)]
    return tokenizer(answer, add_special_tokens=False)["input_ids"][0]


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def _arith_prompt(problem) -> tuple[str, str]:
    """Question plus the worked steps, stopped at the final '= ': (prompt, answer)."""
    *done, last = problem.steps
    lhs = last.split(" = ")[0]
    worked = "".join(f" {s}." for s in done)
    return f"{problem.prompt}{worked} {lhs} = ", str(problem.answer)


_NAMES = ["Ann", "Tom", "Mia", "Sam", "Eva", "Leo"]
_THINGS = ["apples", "books", "coins", "cards", "pens", "shells"]


def _word_prompt(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    return f"{name} has {a} {thing}. {name} gets {b} more {thing}. Now {name} has ", str(a + b)


def arithmetic_task(tokenizer, n: int = 16, levels=(1, 2, 3), seed: int = 0, word_problems: float = 0.0,
                    metric: str = "logit_diff") -> ContrastTask:
    """Multi-step arithmetic: the model completes the final step of a worked solution.

    The corrupted twin is another problem with the same token length and a different first
    answer token. `word_problems` is the fraction of short word problems mixed in.
    """
    rng = random.Random(seed)

    def draw():
        if rng.random() < word_problems:
            return _word_prompt(rng)
        return _arith_prompt(make_problem(rng, rng.choice(levels)))

    return _pairs("arithmetic", tokenizer, draw, n, metric)


def _pairs(name, tokenizer, draw, n, metric, tries: int = 400) -> ContrastTask:
    clean, corrupted, answers, wrong = [], [], [], []
    for _ in range(n * tries):
        if len(clean) == n:
            break
        (p, a) = draw()
        length, tok_a = _n_tokens(tokenizer, p), answer_token(tokenizer, p, a)
        for _ in range(tries):
            q, b = draw()
            if q != p and _n_tokens(tokenizer, q) == length and answer_token(tokenizer, q, b) != tok_a:
                clean.append(p), corrupted.append(q), answers.append(a), wrong.append(b)
                break
    if len(clean) < n:
        raise ValueError(f"Could only build {len(clean)} of {n} '{name}' pairs of equal token length: ask for fewer.")
    return ContrastTask(name, clean, corrupted, answers, wrong, metric)


_WORDS = ("apple river stone cloud house green table music paper light water horse glass silver "
          "garden window summer winter forest bread chair doctor island letter market orange pencil "
          "rabbit school ticket violin yellow planet rocket mirror candle bottle castle dragon engine "
          "finger jacket kitten lemon monkey needle ocean pepper queen tiger wallet zebra").split()


def copy_units(tokenizer, need: int = 24) -> list[str]:
    """Strings that are one token each and stay one token when concatenated (' word' or a letter)."""
    units = [f" {w}" for w in _WORDS if len(tokenizer(f" {w}", add_special_tokens=False)["input_ids"]) == 1]
    if len(units) < need:
        units = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 if len(tokenizer(c, add_special_tokens=False)["input_ids"]) == 1]
    if len(units) < need:
        raise ValueError(f"The tokenizer has only {len(units)} single-token copy units; need {need}.")
    return units


def induction_task(tokenizer, n: int = 16, seq_len: int = 10, prefix: int = 4, seed: int = 0,
                   metric: str = "logit_diff") -> ContrastTask:
    """Copying from context: 'w1 .. wL w1 .. wk' -> w(k+1).

    The corrupted twin swaps w(k+1) in the first copy for another word x, so a model that
    copies predicts x instead: the metric flips sign when the copy is redirected.
    """
    rng = random.Random(seed)
    units = copy_units(tokenizer, seq_len + 2)
    clean, corrupted, answers, wrong = [], [], [], []
    for _ in range(n):
        words = rng.sample(units, seq_len + 1)
        seq, other = words[:seq_len], words[seq_len]
        k = rng.randint(1, min(prefix, seq_len - 1))
        swapped = seq[:k] + [other] + seq[k + 1 :]
        clean.append("".join(seq + seq[:k]))
        corrupted.append("".join(swapped + seq[:k]))
        answers.append(seq[k]), wrong.append(other)
    return ContrastTask("induction", clean, corrupted, answers, wrong, metric)


_FACTS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
          ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
          ("Canada", "Ottawa"), ("China", "Beijing"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
          ("Norway", "Oslo"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Ireland", "Dublin"),
          ("Portugal", "Lisbon"), ("Sweden", "Stockholm"), ("Cuba", "Havana"), ("Chile", "Santiago")]


def factual_task(tokenizer, n: int = 16, seed: int = 0, metric: str = "logit_diff") -> ContrastTask:
    """Factual recall: 'The capital of France is the city of' -> ' Paris' (corrupted: another country)."""
    rng = random.Random(seed)
    templates = ["The capital of {} is the city of", "{}'s capital city is called"]

    def draw():
        country, city = rng.choice(_FACTS)
        return rng.choice(templates).format(country), f" {city}"

    return _pairs("factual", tokenizer, draw, n, metric, tries=100)


def make_task(name: str, tokenizer, n: int = 16, seed: int = 0, metric: str = "logit_diff") -> ContrastTask:
    """A shipped task by name ('arithmetic', 'word', 'induction', 'factual') or a JSONL path."""
    if name == "arithmetic":
        return arithmetic_task(tokenizer, n, seed=seed, metric=metric)
    if name == "word":
        return arithmetic_task(tokenizer, n, seed=seed, word_problems=1.0, metric=metric)
    if name == "induction":
        return induction_task(tokenizer, n, seed=seed, metric=metric)
    if name == "factual":
        return factual_task(tokenizer, n, seed=seed, metric=metric)
    if name.endswith(".jsonl"):
        return load_task(name, metric=metric)
    raise ValueError(f"Unknown task '{name}': use arithmetic, word, induction, factual or a .jsonl file of pairs.")
