"""`RuleBook`: a tree of rules, each with its own steering vector and strength, saved together."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metalens.artifact import read_artifact, write_artifact
from metalens.steering.rules.library import Rule
from metalens.steering.vector import SteeringVector, check_strength

ARTIFACT = "rulebook"  # rulebook.safetensors + rulebook.json


@dataclass
class Entry:
    """One rule in a book: its vector, strength, whether it is on, and what happened to it."""

    rule: Rule
    vector: SteeringVector
    strength: float = 1.0
    enabled: bool = True
    history: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The rule's name (the book's key)."""
        return self.rule.name


class RuleBook:
    """Rules with their vectors; several apply together. Adding a rule never retrains the others.

    Rules form a tree through `Rule.parent` (a general rule with more specific ones beneath).
    """

    def __init__(self, model_name: str | None = None):
        self.model_name = model_name
        self.entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Entry:
        if name not in self.entries:
            raise KeyError(f"No rule '{name}' in this book; it has {sorted(self.entries)}.")
        return self.entries[name]

    def add(self, rule: Rule, vector: SteeringVector, strength: float = 1.0, replace: bool = False) -> Entry:
        """Add a rule with its trained vector (the other rules are left as they are)."""
        if not isinstance(vector, SteeringVector):
            raise TypeError(f"vector must be a SteeringVector, not {type(vector).__name__}.")
        if self.model_name is None:
            self.model_name = vector.model_name
        if vector.model_name != self.model_name:
            raise ValueError(f"Rule '{rule.name}' has a vector for '{vector.model_name}' but this book is "
                             f"for '{self.model_name}': train it on that model.")
        if rule.name in self.entries and not replace:
            raise ValueError(f"Rule '{rule.name}' is already in the book: pass replace=True to overwrite it.")
        if rule.parent is not None and rule.parent not in self.entries:
            raise ValueError(f"Rule '{rule.name}' names parent '{rule.parent}', which is not in the book.")
        entry = Entry(rule, vector, check_strength(strength))
        self.entries[rule.name] = entry
        return entry

    def active(self) -> list[Entry]:
        """Enabled rules, in insertion order (what `metalens.steering.generate` applies)."""
        return [e for e in self.entries.values() if e.enabled]

    def children(self, name: str | None) -> list[Entry]:
        """Rules directly beneath `name` (None: the roots)."""
        return [e for e in self.entries.values() if e.rule.parent == name]

    def tree(self, name: str | None = None, depth: int = 0) -> str:
        """The rule tree as indented text."""
        lines = []
        for entry in self.children(name):
            flag = "" if entry.enabled else " (off)"
            lines.append(f"{'  ' * depth}- {entry.name}: {entry.rule.text} [layers {entry.vector.layers}, "
                         f"strength {entry.strength:g}]{flag}")
            sub = self.tree(entry.name, depth + 1)
            if sub:
                lines.append(sub)
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        """Write directory `path` with rulebook.safetensors (every rule's directions) and rulebook.json."""
        tensors, rules = {}, []
        for entry in self.entries.values():
            vec_tensors, vec_meta = entry.vector.to_artifact(prefix=f"{entry.name}/")
            tensors.update(vec_tensors)
            rules.append({"rule": entry.rule.to_dict(), "strength": entry.strength, "enabled": entry.enabled,
                          "history": entry.history, "vector": vec_meta})
        return write_artifact(path, ARTIFACT, tensors, {"model": self.model_name, "rules": rules})

    @classmethod
    def load(cls, path: str | Path) -> "RuleBook":
        """Read a book written by `save` (also the older layout with one vector file per rule)."""
        path = Path(path)
        tensors, meta = read_artifact(path, ARTIFACT, "write one with RuleBook.save(path).")
        book = cls(meta["model"])
        for item in meta["rules"]:
            rule = Rule(**item["rule"])
            if isinstance(item["vector"], str):  # older books: a path to the rule's own vector files
                vector = SteeringVector.load(path / item["vector"])
            else:
                vector = SteeringVector.from_artifact(tensors, item["vector"], prefix=f"{rule.name}/")
            entry = book.add(rule, vector, item["strength"])
            entry.enabled = item["enabled"]
            entry.history = item["history"]
        return book
