"""Two of the community's circuit tasks: indirect-object identification (Wang et al. 2023) and
greater-than (Hanna et al. 2023), generated for any tokenizer, plus the readers of their EAP-IG data rows."""
from __future__ import annotations

import random
import re

from metalens.circuits.contrast import ContrastTask, appended_token, token_count

IOI_NAMES = [
    "Mary", "John", "Tom", "James", "Anna", "David", "Sarah", "Michael", "Emma", "Daniel", "Laura", "Peter",
    "Kate", "Paul", "Lisa", "Mark", "Alice", "Robert", "Susan", "George", "Linda", "Jack", "Helen", "Frank",
    "Grace", "Henry", "Julia", "Adam", "Rose", "Kevin", "Amy", "Brian", "Emily", "Eric", "Claire", "Steve",
]
IOI_TEMPLATES = [
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "Then, {A} and {B} were working at the house. {S} decided to give a book to",
    "After {A} and {B} went to the office, {S} gave a letter to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "While {A} and {B} were at the restaurant, {S} handed the menu to",
]


def _ioi_names(tokenizer, need: int = 8) -> tuple[list[str], bool]:
    """(names, spaced): names that are one token after a space (' Mary'); else, like `copy_units`,
    single capital letters that are one token on their own (a character-level tokenizer)."""
    names = [w for w in IOI_NAMES if appended_token(tokenizer, "Then, Alice and", f" {w}") is not None]
    if len(names) >= need:
        return names, True
    letters = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if appended_token(tokenizer, "gave it to ", c) is not None]
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
        template = rng.choice(IOI_TEMPLATES)
        p = template.format(A=first, B=second, S=subject) + tail
        q = template.format(A=first, B=second, S=other) + tail
        if token_count(tokenizer, p) == token_count(tokenizer, q):
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
    ids = {appended_token(tokenizer, _GT_PROBE, f"{y:02d}") for y in range(100)}
    return None not in ids and len(ids) == 100


def _greater_than_digits(tokenizer) -> bool:
    """True for the digit form of greater-than; raises when neither form fits the tokenizer."""
    if two_digit_years(tokenizer):
        return False
    ids = {appended_token(tokenizer, _GT_PROBE + "5", str(d)) for d in range(10)}
    if None in ids or len(ids) != 10:
        raise ValueError("Greater-than needs years that end in one token: either every two-digit year '00'..'99' "
                         "or every digit '0'..'9' after '... to the year 175'; this tokenizer gives neither.")
    return True


def start_year(clean: str, yy: int) -> bool:
    """Whether `clean` ends with a century 'CC' and holds the start year 'CC{yy}'."""
    century = re.search(r"(\d\d)$", clean)
    return century is not None and f"{century.group(1)}{yy:02d}" in clean


def greater_than_pair(clean: str, corrupted: str, yy: int, digits: bool) -> tuple | None:
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


def greater_than_from(name: str, pairs: list[tuple], metric: str) -> ContrastTask:
    """A prob_diff-ready task from `greater_than_pair` tuples (clean, corrupted, answer, wrong, good, bad)."""
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
        pair = greater_than_pair(f"The {noun} lasted from the year {century}{yy:02d} to the year {century}",
                                  f"The {noun} lasted from the year {century}01 to the year {century}", yy, digits)
        if pair and token_count(tokenizer, pair[0]) == token_count(tokenizer, pair[1]):
            pairs.append(pair)
    if len(pairs) < n:
        raise ValueError(f"Could only build {len(pairs)} of {n} greater-than pairs of equal token length: "
                         f"ask for fewer.")
    return greater_than_from("greater-than", pairs, metric)



def ioi_names_in(text: str, where: str) -> tuple[str, str]:
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
