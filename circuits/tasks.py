"""Contrast tasks by name or file: arithmetic (multi-step expressions and short word problems, from
metalens.tasks.arithmetic), induction/copy, factual recall, the community's IOI and greater-than
(`community`), and a user's pairs as JSONL or CSV (also the EAP-IG data files). The pair type,
`ContrastTask`, is in `contrast`.
"""
from __future__ import annotations

import csv
import random
import re
import warnings
from pathlib import Path

from metalens.circuits.community import (greater_than_from, greater_than_pair, greater_than_task, ioi_names_in,
                                         ioi_task, start_year, two_digit_years)
from metalens.circuits.contrast import METRICS, ContrastTask, answer_token, token_count
from metalens.data import read_jsonl, read_text_file
from metalens.tasks.arithmetic import make_problem

__all__ = ["METRICS", "TASKS", "CSV_LAYOUTS", "ContrastTask", "answer_token", "arithmetic_task", "check_pairs_file",
           "copy_units", "factual_task", "greater_than_task", "induction_task", "ioi_task", "load_task", "make_task",
           "read_pairs_csv", "two_digit_years"]


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
    for number, rec in enumerate(recs, start=1):
        bad = [k for k in ("clean", "corrupted", "answer", "wrong") if k in rec and not isinstance(rec[k], str)]
        if bad:
            raise ValueError(f"{path}: record {number} has non-text {bad}; clean, corrupted, answer and wrong are strings.")
    has_sets = all("good" in r and "bad" in r for r in recs)
    return ContrastTask(name, [r["clean"] for r in recs], [r["corrupted"] for r in recs],
                        [r["answer"] for r in recs], [r.get("wrong", r["answer"]) for r in recs],
                        metric or "logit_diff", good=[r["good"] for r in recs] if has_sets else None,
                        bad=[r["bad"] for r in recs] if has_sets else None)


def check_pairs_file(path) -> None:
    """Refuse a pairs file that cannot be read (missing, a folder, not UTF-8, short rows, bad JSONL) before
    any model work; what needs the tokenizer (token lengths, greater-than's year form) is checked on load."""
    if Path(path).suffix.lower() == ".csv":
        read_pairs_csv(path)
    else:
        load_task(path)


def read_pairs_csv(path) -> tuple[list[str], list[dict]]:
    """(header, rows as {column: cell}) of a pairs CSV; blank rows skipped, a short row refused naming its line."""
    read_text_file(path, "pairs CSV")  # missing, a folder, not UTF-8: one error naming the file
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise ValueError(f"{path}:{reader.line_num} has {len(row)} fields under a header of {len(header)} "
                                 f"({','.join(header)}): fill in the row or remove it.")
            rows.append(dict(zip(header, row)))
    if not rows:
        raise ValueError(f"{path}: no prompt pairs under the header {','.join(header)!r}.")
    return header, rows


def _load_csv(path, name: str, tokenizer) -> ContrastTask:
    header, rows = read_pairs_csv(path)
    if {"clean", "corrupted", "correct_idx", "incorrect_idx"} <= set(header):
        clean, corrupted = [r["clean"] for r in rows], [r["corrupted"] for r in rows]
        io_s = [ioi_names_in(text, f"{path} row {i + 1}") for i, text in enumerate(clean)]
        return ContrastTask(name, clean, corrupted, [f" {io}" for io, _ in io_s], [f" {s}" for _, s in io_s])
    if header == ["clean", "corrupted", "answer", "wrong_answer"]:
        return ContrastTask(name, [r["clean"] for r in rows], [r["corrupted"] for r in rows],
                            [r["answer"] for r in rows], [r["wrong_answer"] for r in rows])
    if header == ["clean", "corrupted", "label"]:
        if not all(re.fullmatch(r"\d{1,2}", r["label"].strip()) and start_year(r["clean"], int(r["label"]))
                   for r in rows):
            raise ValueError(f"{path}: a clean,corrupted,label file is read as the EAP-IG greater-than data, but "
                             f"its labels are not the start years YY of 'from the year CCYY to the year CC' prompts.")
        if tokenizer is None:
            raise ValueError(f"{path}: greater-than pairs need the tokenizer (load_task(path, tokenizer=...)) to "
                             f"choose between two-digit and single-digit year tokens.")
        digits = not two_digit_years(tokenizer)
        pairs = [p for r in rows if (p := greater_than_pair(r["clean"], r["corrupted"], int(r["label"]), digits))]
        if len(pairs) < len(rows):
            warnings.warn(f"{path}: dropped {len(rows) - len(pairs)} greater-than pairs whose start year ends in 9 "
                          f"(no later year in the same decade in the digit form).")
        return greater_than_from(name, pairs, "prob_diff")
    raise ValueError(f"{path}: unknown CSV header {','.join(header)!r}. Accepted header lines: "
                     + "; ".join(repr(h) for h in CSV_LAYOUTS) + ".")


def _equal_lengths(task: ContrastTask, tokenizer) -> ContrastTask:
    keep = [i for i, (c, x) in enumerate(zip(task.clean, task.corrupted))
            if token_count(tokenizer, c) == token_count(tokenizer, x)]
    if not keep:
        raise ValueError(f"Task '{task.name}': no pair has clean and corrupted prompts of equal token length.")
    if len(keep) < len(task):
        warnings.warn(f"Task '{task.name}': dropped {len(task) - len(keep)} of {len(task)} pairs whose clean and "
                      f"corrupted prompts differ in token length (they cannot be patched).")
    return task.select(keep)


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
        length, tok_a = token_count(tokenizer, p), answer_token(tokenizer, p, a)
        for _ in range(tries):
            q, b = draw()
            if q != p and token_count(tokenizer, q) == length and answer_token(tokenizer, q, b) != tok_a:
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
