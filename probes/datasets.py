"""Labelled sentence sets: the shipped ones (`moral`, `facts`), a metalens JSONL file, or the
standard formats the neurofeedback paper used (ETHICS commonsense CSV, true/false CSV,
Anthropic model-written-evaluations JSONL)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metalens.data import read_csv, read_jsonl, record_groups

DATA_DIR = Path(__file__).parent / "data"
SHIPPED = {
    "moral": "first-person everyday actions; 1 = morally acceptable, 0 = unacceptable",
    "facts": "simple statements; 1 = true, 0 = false",
}


@dataclass
class LabelledSet:
    """Sentences with integer labels (and the labels' names where the file gives them).

    `groups` holds one id per sentence: near-copies (the same action in another time frame) share
    one. Without a `group` field in the file every sentence is its own group.
    """

    name: str
    texts: list[str]
    labels: list[int]
    label_names: dict[int, str]
    groups: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.groups:
            self.groups = [f"#{i + 1}" for i in range(len(self.texts))]
        if len(self.groups) != len(self.texts):
            raise ValueError(f"{len(self.groups)} groups for {len(self.texts)} texts: give one group id per text.")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "LabelledSet":
        """The records at positions `idx`, in that order."""
        idx = [int(i) for i in idx]
        return LabelledSet(self.name, [self.texts[i] for i in idx], [self.labels[i] for i in idx], dict(self.label_names),
                           [self.groups[i] for i in idx])

    def balanced(self, n: int | None, seed: int = 0) -> "LabelledSet":
        """A random subset of about `n` records, `n // n_classes` per class, in file order (all when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        labels = np.asarray(self.labels)
        classes = np.unique(labels)
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: n // len(classes)] for c in classes])
        return self.subset(np.sort(idx))


def sample_distinct_groups(rng: np.random.Generator, groups, k: int) -> np.ndarray:
    """`k` random indices into `groups` (one id per item), no two from one group: what one prompt
    may hold, so no item has a near-copy (whose label it could copy) earlier in the prompt.

    `k` distinct groups are drawn uniformly, then one random item of each. When every group is a
    single item this is `rng.choice(len(groups), k, replace=False)`.
    """
    groups = np.asarray(groups).ravel()
    names, inverse = np.unique(groups, return_inverse=True)
    if k > len(names):
        raise ValueError(f"Cannot draw {k} items from {len(names)} groups without two of one group in a prompt.")
    if len(names) == len(groups):
        return rng.choice(len(groups), k, replace=False)
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    return np.array([rng.choice(members[g]) for g in rng.choice(len(names), k, replace=False)])


FORMATS = {
    "metalens JSONL": '{"text": ..., "label": 0|1} per line, optionally "group": ID (and "label_name")',
    "ETHICS commonsense CSV": "header label,input,is_short,edited; label 1 = morally wrong",
    "true/false CSV": "header statement,label; label 1 = true",
    "model-written-evaluations JSONL":
        '{"question": ..., "answer_matching_behavior": ..., "answer_not_matching_behavior": ...} per line',
}
ETHICS_COLUMNS = ("label", "input", "is_short")  # `edited` is read by nobody, so not required
TRUE_FALSE_COLUMNS = ("statement", "label")
MWE_KEYS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")


def _formats() -> str:
    return "; ".join(f"{name}: {form}" for name, form in FORMATS.items())


def load_dataset(name_or_path: str | Path) -> LabelledSet:
    """A shipped set by name (`moral`, `facts`) or a file in one of `FORMATS`, told apart by
    extension and header: a `.csv` with an `input` column is ETHICS (`load_ethics`, short rows
    only), with a `statement` column true/false (`load_true_false`); a JSONL whose first line
    has `question` is a model-written evaluation (`load_mwe`), otherwise metalens JSONL with
    `text` and integer `label` (and optionally `group`, the id shared by near-copies)."""
    if str(name_or_path) in SHIPPED:
        return _load_metalens_jsonl(DATA_DIR / f"{name_or_path}.jsonl")
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"No dataset '{name_or_path}': use one of {sorted(SHIPPED)} or a path to a file in one "
                                f"of these formats: {_formats()}.")
    if path.suffix.lower() == ".csv":
        header = set(read_csv(path)[0])
        if "input" in header:
            return load_ethics(path)
        if "statement" in header:
            return load_true_false(path)
        raise ValueError(f"{path} has header {sorted(header)}: expected ETHICS commonsense "
                         f"({','.join(ETHICS_COLUMNS)},edited) or true/false ({','.join(TRUE_FALSE_COLUMNS)}).")
    if "question" in read_jsonl(path)[0]:
        return load_mwe(path)
    return _load_metalens_jsonl(path)


def _load_metalens_jsonl(path: Path) -> LabelledSet:
    records = read_jsonl(path, required=("text", "label"))
    labels = []
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec["label"], int) or isinstance(rec["label"], bool):
            raise ValueError(f"{path}: record {number} has label {rec['label']!r}; labels must be integers (0, 1, ...).")
        labels.append(rec["label"])
    names = {rec["label"]: rec["label_name"] for rec in records if "label_name" in rec}
    return LabelledSet(Path(path).stem, [r["text"] for r in records], labels, names, record_groups(records))


def _binary(value, path, row: int, column: str, allowed: dict[str, int]) -> int:
    key = (value or "").strip().lower()
    if key not in allowed:
        raise ValueError(f"{path}: row {row} has {column}={value!r}; expected one of {sorted(allowed)}.")
    return allowed[key]


_ZERO_ONE = {"0": 0, "1": 1}
_BOOL = {"true": 1, "false": 0, "1": 1, "0": 0}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _minimal_pair(a: str, b: str, min_overlap: float = 0.3) -> bool:
    """Two scenarios that share at least `min_overlap` of their words (Jaccard). On cm_test.csv,
    adjacent opposite-label short rows above 0.3 are edits of one scenario ("I helped / tossed an
    old lady across the road."); below about 0.25 they are unrelated."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) >= min_overlap * max(len(wa | wb), 1)


def load_ethics(path: str | Path, short_only: bool = True) -> LabelledSet:
    """The ETHICS commonsense-morality CSV (Hendrycks et al., 2021; header label,input,is_short,edited).

    Labels stay as in the file: 1 = morally wrong, 0 = not wrong (the opposite direction to the
    shipped `moral` set, where 1 = acceptable). `short_only` keeps the `is_short` rows (one- or
    two-sentence first-person scenarios), as the neurofeedback paper's loader does; the long rows
    are multi-paragraph forum posts. Adjacent kept rows with opposite labels that share at least
    30% of their words are a minimal pair, edits of one scenario, and share a group (`pair-ROW`),
    so a pair never straddles a split or shares a prompt; other rows are their own group (`#ROW`).
    """
    rows = read_csv(path, required=ETHICS_COLUMNS)
    texts, labels, keep = [], [], []
    for number, row in enumerate(rows, start=1):
        label = _binary(row["label"], path, number, "label", _ZERO_ONE)
        short = _binary(row["is_short"], path, number, "is_short", _BOOL)
        if short or not short_only:
            texts.append((row["input"] or "").strip())
            labels.append(label)
            keep.append(number)
    if not texts:
        raise ValueError(f"{path} has no is_short rows: pass short_only=False to load_ethics to keep the long ones.")
    groups = [f"#{n}" for n in keep]
    i = 0
    while i < len(texts) - 1:
        if keep[i + 1] == keep[i] + 1 and labels[i] != labels[i + 1] and _minimal_pair(texts[i], texts[i + 1]):
            groups[i] = groups[i + 1] = f"pair-{keep[i]}"
            i += 2
        else:
            i += 1
    return LabelledSet(Path(path).stem, texts, labels, {0: "not wrong", 1: "wrong"}, groups)


def load_true_false(path: str | Path) -> LabelledSet:
    """A true/false statements CSV (header statement,label, as in Azaria & Mitchell's 2023 sets):
    1 = true, 0 = false. Extra columns are ignored, except an optional `group` column (near-copies)."""
    rows = read_csv(path, required=TRUE_FALSE_COLUMNS)
    labels = [_binary(row["label"], path, number, "label", _ZERO_ONE) for number, row in enumerate(rows, start=1)]
    groups = [(row.get("group") or "").strip() or f"#{number}" for number, row in enumerate(rows, start=1)]
    return LabelledSet(Path(path).stem, [(row["statement"] or "").strip() for row in rows], labels,
                       {0: "false", 1: "true"}, groups)


def load_mwe(path: str | Path) -> LabelledSet:
    """An Anthropic model-written-evaluations JSONL (Perez et al., 2022; keys question,
    answer_matching_behavior, answer_not_matching_behavior).

    Each question yields one item per answer: the question, then "Answer: " (unless the question
    already ends with it) and the answer, with
    label 1 for the answer matching the behaviour and 0 for the one that does not (a key holding
    a list gives one item per entry). All items of a question share one group (`q` + line number),
    so they never straddle a split or share a prompt.
    """
    texts, labels, groups = [], [], []
    for number, rec in enumerate(read_jsonl(path, required=MWE_KEYS), start=1):
        for key, label in (("answer_matching_behavior", 1), ("answer_not_matching_behavior", 0)):
            answers = rec[key] if isinstance(rec[key], list) else [rec[key]]
            for answer in answers:
                if not isinstance(answer, str) or not isinstance(rec["question"], str):
                    raise ValueError(f"{path}:{number}: question and answers must be strings; {key} is {answer!r}.")
                question = rec["question"].rstrip()
                cue = " " if question.endswith("Answer:") else "\nAnswer: "  # some files end the question with it
                texts.append(f"{question}{cue}{answer.strip()}")
                labels.append(label)
                groups.append(f"q{number}")
    return LabelledSet(Path(path).stem, texts, labels,
                       {0: "answer not matching behavior", 1: "answer matching behavior"}, groups)
