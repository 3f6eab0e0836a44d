"""Contrast tasks: clean/corrupted prompt pairs with answer tokens and a scalar metric.

Each clean prompt has a corrupted twin of the same token length whose answer differs, so
activations can be patched position by position. Generators: arithmetic (multi-step
expressions and short word problems, from metalens.tasks.arithmetic), induction/copy, factual
recall, and two of the community's circuit tasks: indirect-object identification (Wang et al.
2023) and greater-than (Hanna et al. 2023). Users supply their own pairs as JSONL or CSV (also
the EAP-IG data files).
"""
from __future__ import annotations

import csv
import random
import re
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from metalens.tasks.arithmetic import make_problem
from metalens.data import read_jsonl, write_jsonl

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


CSV_LAYOUTS = ("clean,corrupted,answer,wrong_answer", "clean,corrupted,label",
               ",clean,corrupted,corrupted_hard,correct_idx,incorrect_idx")


def load_task(path, metric: str | None = None, name: str | None = None, tokenizer=None) -> ContrastTask:
    """A task from a JSONL or CSV file of prompt pairs.

    JSONL: lines {"clean", "corrupted", "answer", "wrong"} (wrong optional for kl; "good" and
    "bad" answer lists for prob_diff). CSV, one of `CSV_LAYOUTS` as header:
    `clean,corrupted,answer,wrong_answer` (logit_diff); the EAP-IG greater-than file
    `clean,corrupted,label` (label: the start year's last two digits; prob_diff, see
    `greater_than_task`, needs `tokenizer` to choose the two-digit or the digit form); the
    EAP-IG IOI file `,clean,corrupted,corrupted_hard,correct_idx,incorrect_idx` (the ids are
    another tokenizer's and are ignored: answer and wrong are the indirect object and the
    subject, read from the names in the text; logit_diff). `metric` None: the layout's own.
    With `tokenizer`, CSV pairs whose prompts differ in token length are dropped (warned), since
    they cannot be patched.
    """
    name = name or str(path)
    if Path(path).suffix.lower() == ".csv":
        task = _load_csv(path, name, tokenizer)
        task = task if metric is None else task.with_metric(metric)
        return task if tokenizer is None else _equal_lengths(task, tokenizer)
    recs = read_jsonl(path, required=("clean", "corrupted", "answer"))
    has_sets = all("good" in r and "bad" in r for r in recs)
    return ContrastTask(name, [r["clean"] for r in recs], [r["corrupted"] for r in recs],
                        [r["answer"] for r in recs], [r.get("wrong", r["answer"]) for r in recs],
                        metric or "logit_diff", good=[r["good"] for r in recs] if has_sets else None,
                        bad=[r["bad"] for r in recs] if has_sets else None)


def _load_csv(path, name: str, tokenizer) -> ContrastTask:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = [dict(zip(header, row)) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path}: no prompt pairs under the header {','.join(header)!r}.")
    if {"clean", "corrupted", "correct_idx", "incorrect_idx"} <= set(header):
        clean, corrupted = [r["clean"] for r in rows], [r["corrupted"] for r in rows]
        io_s = [_ioi_names_in(text, f"{path} row {i + 1}") for i, text in enumerate(clean)]
        return ContrastTask(name, clean, corrupted, [f" {io}" for io, _ in io_s], [f" {s}" for _, s in io_s])
    if header == ["clean", "corrupted", "answer", "wrong_answer"]:
        return ContrastTask(name, [r["clean"] for r in rows], [r["corrupted"] for r in rows],
                            [r["answer"] for r in rows], [r["wrong_answer"] for r in rows])
    if header == ["clean", "corrupted", "label"]:
        if not all(re.fullmatch(r"\d{1,2}", r["label"].strip()) and _start_year(r["clean"], int(r["label"]))
                   for r in rows):
            raise ValueError(f"{path}: a clean,corrupted,label file is read as the EAP-IG greater-than data, but "
                             f"its labels are not the start years YY of 'from the year CCYY to the year CC' prompts.")
        if tokenizer is None:
            raise ValueError(f"{path}: greater-than pairs need the tokenizer (load_task(path, tokenizer=...)) to "
                             f"choose between two-digit and single-digit year tokens.")
        digits = not two_digit_years(tokenizer)
        pairs = [p for r in rows if (p := _greater_than_pair(r["clean"], r["corrupted"], int(r["label"]), digits))]
        if len(pairs) < len(rows):
            warnings.warn(f"{path}: dropped {len(rows) - len(pairs)} greater-than pairs whose start year ends in 9 "
                          f"(no later year in the same decade in the digit form).")
        return _greater_than_from(name, pairs, "prob_diff")
    raise ValueError(f"{path}: unknown CSV header {','.join(header)!r}. Accepted header lines: "
                     + "; ".join(repr(h) for h in CSV_LAYOUTS) + ".")


def _ioi_names_in(text: str, where: str) -> tuple[str, str]:
    """(indirect object, subject) of an IOI prompt: 'A and B ...' then one of them again (the subject)."""
    first = re.search(r"\b([A-Z][a-z]*) and ([A-Z][a-z]*)\b", text)
    if first is None:
        raise ValueError(f"{where}: no 'Name and Name' clause in the IOI prompt {text!r}.")
    a, b = first.groups()
    rest = text[first.end():]
    again = [x for x in (a, b) if re.search(rf"\b{x}\b", rest)]
    if len(again) != 1 or a == b:
        raise ValueError(f"{where}: exactly one of {a!r} and {b!r} should appear again (the subject) in {text!r}.")
    subject = again[0]
    return (b if subject == a else a), subject


def _equal_lengths(task: ContrastTask, tokenizer) -> ContrastTask:
    keep = [i for i, (c, x) in enumerate(zip(task.clean, task.corrupted))
            if _n_tokens(tokenizer, c) == _n_tokens(tokenizer, x)]
    if not keep:
        raise ValueError(f"Task '{task.name}': no pair has clean and corrupted prompts of equal token length.")
    if len(keep) < len(task):
        warnings.warn(f"Task '{task.name}': dropped {len(task) - len(keep)} of {len(task)} pairs whose clean and "
                      f"corrupted prompts differ in token length (they cannot be patched).")
    return task.select(keep)


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


_IOI_NAMES = [
    "Mary", "John", "Tom", "James", "Anna", "David", "Sarah", "Michael", "Emma", "Daniel", "Laura", "Peter",
    "Kate", "Paul", "Lisa", "Mark", "Alice", "Robert", "Susan", "George", "Linda", "Jack", "Helen", "Frank",
    "Grace", "Henry", "Julia", "Adam", "Rose", "Kevin", "Amy", "Brian", "Emily", "Eric", "Claire", "Steve",
]
_IOI_TEMPLATES = [
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "Then, {A} and {B} were working at the house. {S} decided to give a book to",
    "After {A} and {B} went to the office, {S} gave a letter to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "While {A} and {B} were at the restaurant, {S} handed the menu to",
]


def _appended_token(tokenizer, prompt: str, piece: str) -> int | None:
    """The one token `piece` adds after `prompt`, or None when it adds more or merges into the prompt."""
    pre, full = tokenizer(prompt)["input_ids"], tokenizer(prompt + piece)["input_ids"]
    return full[-1] if len(full) == len(pre) + 1 and full[: len(pre)] == pre else None


def _ioi_names(tokenizer, need: int = 8) -> tuple[list[str], bool]:
    """(names, spaced): names that are one token after a space (' Mary'); else, like `copy_units`,
    single capital letters that are one token on their own (a character-level tokenizer)."""
    names = [w for w in _IOI_NAMES if _appended_token(tokenizer, "Then, Alice and", f" {w}") is not None]
    if len(names) >= need:
        return names, True
    letters = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if _appended_token(tokenizer, "gave it to ", c) is not None]
    if len(letters) >= need:
        return letters, False
    raise ValueError(f"The tokenizer has only {len(names)} single-token names (' Mary', ' John', ...) and "
                     f"{len(letters)} single-token capital letters; the IOI task needs {need} of either.")


def ioi_task(tokenizer, n: int = 16, seed: int = 0, metric: str = "logit_diff") -> ContrastTask:
    """Indirect-object identification (Wang et al. 2023): 'When Mary and John went to the store,
    John gave a drink to' -> ' Mary'.

    Half the pairs name the indirect object first (ABBA), half the subject first (BABA), over
    several templates. The corrupted twin replaces the repeated subject by a third name (as in
    the EAP-IG data), so nothing marks which name to avoid. Answer: the indirect object; wrong:
    the subject (logit_diff = logit(IO) - logit(S) on every run). Names are single tokens after a
    space; a tokenizer with too few (the character-level test tokenizer) gets single capital
    letters and prompts ending in a space, answered by the bare letter.
    """
    rng = random.Random(seed)
    names, spaced = _ioi_names(tokenizer)
    tail = "" if spaced else " "
    clean, corrupted, answers, wrong = [], [], [], []
    for _ in range(n * 50):
        if len(clean) == n:
            break
        io, subject, other = rng.sample(names, 3)
        first, second = (io, subject) if len(clean) % 2 == 0 else (subject, io)  # ABBA, then BABA
        template = rng.choice(_IOI_TEMPLATES)
        p = template.format(A=first, B=second, S=subject) + tail
        q = template.format(A=first, B=second, S=other) + tail
        if _n_tokens(tokenizer, p) == _n_tokens(tokenizer, q):
            clean.append(p), corrupted.append(q)
            answers.append(f" {io}" if spaced else io), wrong.append(f" {subject}" if spaced else subject)
    if len(clean) < n:
        raise ValueError(f"Could only build {len(clean)} of {n} IOI pairs of equal token length: ask for fewer.")
    return ContrastTask("ioi", clean, corrupted, answers, wrong, metric)


_GT_NOUNS = [
    "war", "contract", "plan", "marriage", "treaty", "journey", "siege", "reign", "project", "study",
    "trial", "dynasty", "voyage", "friendship", "rivalry", "campaign", "expedition", "program",
    "pilgrimage", "negotiation",
]
_GT_PROBE = "The war lasted from the year 1750 to the year 17"


def two_digit_years(tokenizer) -> bool:
    """Whether every two-digit year '00'..'99' is one next token after '... to the year 17' (GPT-2's
    form, used by Hanna et al.); False for tokenizers that write numbers digit by digit (gemma-3,
    SmolLM2) or in other groups (llama-3's three-digit chunks: '1753' -> '175', '3')."""
    ids = {_appended_token(tokenizer, _GT_PROBE, f"{y:02d}") for y in range(100)}
    return None not in ids and len(ids) == 100


def _greater_than_digits(tokenizer) -> bool:
    """True for the digit form of greater-than; raises when neither form fits the tokenizer."""
    if two_digit_years(tokenizer):
        return False
    ids = {_appended_token(tokenizer, _GT_PROBE + "5", str(d)) for d in range(10)}
    if None in ids or len(ids) != 10:
        raise ValueError("Greater-than needs years that end in one token: either every two-digit year '00'..'99' "
                         "or every digit '0'..'9' after '... to the year 175'; this tokenizer gives neither.")
    return True


def _start_year(clean: str, yy: int) -> bool:
    """Whether `clean` ends with a century 'CC' and holds the start year 'CC{yy}'."""
    century = re.search(r"(\d\d)$", clean)
    return century is not None and f"{century.group(1)}{yy:02d}" in clean


def _greater_than_pair(clean: str, corrupted: str, yy: int, digits: bool) -> tuple | None:
    """(clean, corrupted, answer, wrong, good, bad) for start year ..yy, or None when a set would be empty."""
    if not digits:
        if yy >= 99:
            return None
        return (clean, corrupted, f"{yy + 1:02d}", f"{yy:02d}",
                [f"{y:02d}" for y in range(yy + 1, 100)], [f"{y:02d}" for y in range(yy + 1)])
    tens, units = divmod(yy, 10)
    if units == 9:  # no later year in the same decade
        return None
    return (f"{clean}{tens}", f"{corrupted}{tens}", str(units + 1), str(units),
            [str(d) for d in range(units + 1, 10)], [str(d) for d in range(units + 1)])


def _greater_than_from(name: str, pairs: list[tuple], metric: str) -> ContrastTask:
    if not pairs:
        raise ValueError(f"Task '{name}': no greater-than pairs left.")
    clean, corrupted, answers, wrong, good, bad = (list(x) for x in zip(*pairs))
    return ContrastTask(name, clean, corrupted, answers, wrong, metric, good=good, bad=bad)


def greater_than_task(tokenizer, n: int = 16, seed: int = 0, metric: str = "prob_diff") -> ContrastTask:
    """Greater-than (Hanna et al. 2023): 'The war lasted from the year 1732 to the year 17' -> a year above 32.

    prob_diff = sum of p(years above the start) - sum of p(years at or below it), years 00..99
    (start years 02..98). The corrupted twin starts in year ..01 (every year is above it), as in
    the paper: it removes the information, so the metric drops, and turns negative for start
    years in the upper half.

    Deviation for tokenizers without one token per two-digit year (`two_digit_years` False:
    gemma-3 and SmolLM2 write numbers digit by digit): the digit form. The prompt also carries
    the start year's tens digit ('from the year 1732 to the year 173') and the next token is the
    units digit: good = digits above the start's units digit, bad = digits at or below it. Start
    years ending in 9 are skipped (no later year in that decade); the corrupted twin is
    'from the year 1701 to the year 173', again every year above the start. `answers`/`wrong`
    hold the next year after the start and the start year (the logit_diff view of the pair).
    """
    rng = random.Random(seed)
    digits = _greater_than_digits(tokenizer)
    pairs = []
    for _ in range(n * 50):
        if len(pairs) == n:
            break
        century, yy, noun = rng.randint(11, 17), rng.randint(2, 98), rng.choice(_GT_NOUNS)
        pair = _greater_than_pair(f"The {noun} lasted from the year {century}{yy:02d} to the year {century}",
                                  f"The {noun} lasted from the year {century}01 to the year {century}", yy, digits)
        if pair and _n_tokens(tokenizer, pair[0]) == _n_tokens(tokenizer, pair[1]):
            pairs.append(pair)
    if len(pairs) < n:
        raise ValueError(f"Could only build {len(pairs)} of {n} greater-than pairs of equal token length: "
                         f"ask for fewer.")
    return _greater_than_from("greater-than", pairs, metric)


TASKS = ("arithmetic", "word", "induction", "factual", "ioi", "greater-than")


def make_task(name: str, tokenizer, n: int = 16, seed: int = 0, metric: str | None = None) -> ContrastTask:
    """A shipped task by name (`TASKS`), or a .jsonl / .csv file of pairs (a CSV is cut to its first `n` pairs).

    `metric` None: the task's own (prob_diff for greater-than, logit_diff for the rest).
    """
    own = {"tokenizer": tokenizer, "n": n, "seed": seed}
    if name == "arithmetic":
        return arithmetic_task(**own, metric=metric or "logit_diff")
    if name == "word":
        return arithmetic_task(**own, word_problems=1.0, metric=metric or "logit_diff")
    if name == "induction":
        return induction_task(**own, metric=metric or "logit_diff")
    if name == "factual":
        return factual_task(**own, metric=metric or "logit_diff")
    if name == "ioi":
        return ioi_task(**own, metric=metric or "logit_diff")
    if name == "greater-than":
        return greater_than_task(**own, metric=metric or "prob_diff")
    if name.endswith(".jsonl"):
        return load_task(name, metric=metric)
    if name.endswith(".csv"):
        return load_task(name, metric=metric, tokenizer=tokenizer).subset(n)
    raise ValueError(f"Unknown task '{name}': use {', '.join(TASKS)}, or a .jsonl or .csv file of pairs.")
