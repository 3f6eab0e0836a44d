"""Labelled sentence sets: the shipped ones (`moral`, `facts`) or a user's JSONL file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalens.data import read_jsonl

DATA_DIR = Path(__file__).parent / "data"
SHIPPED = {
    "moral": "first-person everyday actions; 1 = morally acceptable, 0 = unacceptable",
    "facts": "simple statements; 1 = true, 0 = false",
}


@dataclass
class LabelledSet:
    """Sentences with integer labels (and the labels' names where the file gives them)."""

    name: str
    texts: list[str]
    labels: list[int]
    label_names: dict[int, str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "LabelledSet":
        """The records at positions `idx`, in that order."""
        idx = [int(i) for i in idx]
        return LabelledSet(self.name, [self.texts[i] for i in idx], [self.labels[i] for i in idx], dict(self.label_names))

    def balanced(self, n: int | None, seed: int = 0) -> "LabelledSet":
        """A random subset of about `n` records, `n // n_classes` per class, in file order (all when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        labels = np.asarray(self.labels)
        classes = np.unique(labels)
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: n // len(classes)] for c in classes])
        return self.subset(np.sort(idx))


def load_dataset(name_or_path: str | Path) -> LabelledSet:
    """A shipped set by name (`moral`, `facts`) or any JSONL with `text` and integer `label` keys."""
    path = DATA_DIR / f"{name_or_path}.jsonl" if str(name_or_path) in SHIPPED else Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"No dataset '{name_or_path}': use one of {sorted(SHIPPED)} or a path to a JSONL file "
            "whose lines hold {\"text\": ..., \"label\": 0 or 1}."
        )
    records = read_jsonl(path, required=("text", "label"))
    labels = []
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec["label"], int) or isinstance(rec["label"], bool):
            raise ValueError(f"{path}: record {number} has label {rec['label']!r}; labels must be integers (0, 1, ...).")
        labels.append(rec["label"])
    names = {rec["label"]: rec["label_name"] for rec in records if "label_name" in rec}
    return LabelledSet(Path(path).stem, [r["text"] for r in records], labels, names)
