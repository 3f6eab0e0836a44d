"""Labelled sentence sets: the shipped ones (`moral`, `facts`) or a user's JSONL file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metalens.data import read_jsonl, record_groups

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


def load_dataset(name_or_path: str | Path) -> LabelledSet:
    """A shipped set by name (`moral`, `facts`) or any JSONL with `text` and integer `label` keys
    (and optionally `group`, the id shared by near-copies)."""
    path = DATA_DIR / f"{name_or_path}.jsonl" if str(name_or_path) in SHIPPED else Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"No dataset '{name_or_path}': use one of {sorted(SHIPPED)} or a path to a JSONL file "
            "whose lines hold {\"text\": ..., \"label\": 0 or 1} (optionally \"group\": ID for near-copies)."
        )
    records = read_jsonl(path, required=("text", "label"))
    labels = []
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec["label"], int) or isinstance(rec["label"], bool):
            raise ValueError(f"{path}: record {number} has label {rec['label']!r}; labels must be integers (0, 1, ...).")
        labels.append(rec["label"])
    names = {rec["label"]: rec["label_name"] for rec in records if "label_name" in rec}
    return LabelledSet(Path(path).stem, [r["text"] for r in records], labels, names, record_groups(records))
