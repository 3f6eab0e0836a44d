"""`RuleBook`: a tree of rules, each with its own steering vector and strength, saved together."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from metalens.steering.rules import Rule
from metalens.steering.vector import SteeringVector, check_strength


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
        """Write `path/rulebook.json` and one `path/vectors/<rule>.safetensors` (+ .json) per rule."""
        path = Path(path)
        (path / "vectors").mkdir(parents=True, exist_ok=True)
        rules = []
        for entry in self.entries.values():
            entry.vector.save(path / "vectors" / f"{entry.name}.safetensors")
            rules.append({"rule": entry.rule.to_dict(), "strength": entry.strength, "enabled": entry.enabled,
                          "history": entry.history, "vector": f"vectors/{entry.name}.safetensors",
                          "layers": entry.vector.layers, "method": entry.vector.method, "seed": entry.vector.seed,
                          "revision": entry.vector.revision})
        meta = {"model": self.model_name, "rules": rules}
        (path / "rulebook.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RuleBook":
        """Read a book written by `save`."""
        path = Path(path)
        if not (path / "rulebook.json").exists():
            raise FileNotFoundError(f"No rule book at {path}: write one with RuleBook.save(path).")
        meta = json.loads((path / "rulebook.json").read_text())
        book = cls(meta["model"])
        for item in meta["rules"]:
            entry = book.add(Rule(**item["rule"]), SteeringVector.load(path / item["vector"]), item["strength"])
            entry.enabled = item["enabled"]
            entry.history = item["history"]
        return book
