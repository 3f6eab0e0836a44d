"""`ContrastTask`: clean/corrupted prompt pairs with answer tokens and the metric that scores them.

Each clean prompt has a corrupted twin of the same token length whose answer differs, so
activations can be patched position by position. The generators live in `tasks` (arithmetic,
induction, factual, files of pairs) and `community` (IOI, greater-than).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from metalens.data import write_jsonl

METRICS = ("logit_diff", "logprob", "kl", "prob_diff")


@dataclass
class ContrastTask:
    """Clean/corrupted prompt pairs of equal token length, their answers, and the metric to score them.

    `metric` is 'logit_diff', 'logprob', 'kl' or 'prob_diff'. prob_diff needs `good` and `bad`:
    per pair, the answer strings whose next-token probabilities count for and against the
    behaviour (scored as the first token of each after the clean prompt, on every run).
    """

    name: str
    clean: list[str]
    corrupted: list[str]
    answers: list[str]  # the clean prompt's answer (its first token is scored)
    wrong: list[str]  # the corrupted prompt's answer
    metric: str = "logit_diff"
    good: list[list[str]] | None = None  # per pair, answers counted for the behaviour (prob_diff)
    bad: list[list[str]] | None = None  # per pair, answers counted against it (prob_diff)

    def __post_init__(self):
        n = len(self.clean)
        if not n or any(len(x) != n for x in (self.corrupted, self.answers, self.wrong)):
            raise ValueError(f"Task '{self.name}': clean, corrupted, answers and wrong need the same non-zero length.")
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric '{self.metric}': use one of {METRICS}.")
        if (self.good is None) != (self.bad is None):
            raise ValueError(f"Task '{self.name}': give both `good` and `bad` answer sets, or neither.")
        if self.good is None and self.metric == "prob_diff":
            raise ValueError(f"Task '{self.name}': the prob_diff metric needs per-pair `good` and `bad` answer sets.")
        if self.good is not None:
            if len(self.good) != n or len(self.bad) != n:
                raise ValueError(f"Task '{self.name}': `good` and `bad` need one answer set per pair ({n}).")
            empty = [i for i in range(n) if not self.good[i] or not self.bad[i]]
            if empty:
                raise ValueError(f"Task '{self.name}' pair {empty[0]}: `good` and `bad` answer sets must not be empty.")

    def __len__(self) -> int:
        return len(self.clean)

    def subset(self, n: int) -> "ContrastTask":
        """The first `n` pairs."""
        return self.select(range(min(n, len(self))))

    def select(self, indices) -> "ContrastTask":
        """The pairs at `indices`, in that order (repeats allowed, e.g. for a bootstrap resample)."""
        pick = [int(i) for i in indices]

        def take(values):
            return None if values is None else [values[i] for i in pick]

        return replace(self, clean=take(self.clean), corrupted=take(self.corrupted), answers=take(self.answers),
                       wrong=take(self.wrong), good=take(self.good), bad=take(self.bad))

    def with_metric(self, metric: str) -> "ContrastTask":
        """The same pairs scored by another metric."""
        return replace(self, metric=metric)

    def save_jsonl(self, path) -> None:
        """Write one {"clean", "corrupted", "answer", "wrong"[, "good", "bad"]} line per pair (for `load_task`)."""
        rows = [{"clean": c, "corrupted": x, "answer": a, "wrong": w}
                for c, x, a, w in zip(self.clean, self.corrupted, self.answers, self.wrong)]
        if self.good is not None:
            rows = [{**r, "good": g, "bad": b} for r, g, b in zip(rows, self.good, self.bad)]
        write_jsonl(path, rows)

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ContrastTask":
        """The task `to_dict` described (results written before `good`/`bad` existed load too)."""
        return cls(**{k: data[k] for k in ("name", "clean", "corrupted", "answers", "wrong", "metric")},
                   good=data.get("good"), bad=data.get("bad"))


def answer_token(tokenizer, prompt: str, answer: str) -> int:
    """Id of the first token the model must produce after `prompt` to write `answer`."""
    full = tokenizer(prompt + answer)["input_ids"]
    pre = tokenizer(prompt)["input_ids"]
    if len(full) > len(pre) and full[: len(pre)] == pre:
        return full[len(pre)]
    return tokenizer(answer, add_special_tokens=False)["input_ids"][0]


def token_count(tokenizer, text: str) -> int:
    """Number of tokens `text` has with the tokenizer's special tokens (what patching lines up)."""
    return len(tokenizer(text)["input_ids"])




def appended_token(tokenizer, prompt: str, piece: str) -> int | None:
    """The one token `piece` adds after `prompt`, or None when it adds more or merges into the prompt."""
    pre, full = tokenizer(prompt)["input_ids"], tokenizer(prompt + piece)["input_ids"]
    return full[-1] if len(full) == len(pre) + 1 and full[: len(pre)] == pre else None
