"""The atlas's config and result (atlas.json / atlas.html), its items and its command line."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from metalens.analyses.battery import FOLLOW_UPS, SHOTS, Item, arithmetic_items, read_items, shipped_facts
from metalens.report import save_json
from metalens.tasks.arithmetic import LEVELS

FORMAT_VERSION = 2  # 2: per-item rows as items.jsonl, multiplicity, the training-overlap check
ITEMS_FILE = "items.jsonl"
ARITHMETIC_SEED = 900_000_000  # the atlas's arithmetic seed stream (+ config.seed)


@dataclass
class AtlasConfig:
    """Items, prompts and statistics of `run_atlas` (about 3 CPU minutes per 80 items on gemma-3-270m)."""

    n_arithmetic: int = 40  # two-choice arithmetic items, cycling through `levels`
    levels: tuple[int, ...] = (1, 2, 3, 4)
    n_facts: int = 40  # shipped two-choice world facts (at most 40)
    items: str | None = None  # your JSONL of {"question", "choices", "answer"} (added to the above)
    n_shots: int = 2  # worked examples before each prompt for base models (chat models: zero-shot)
    probe_at: str = "keep"  # where the probe reads: the last token of the "keep" prompt, or "answer"
    layers: tuple[int, ...] | None = None  # probe layers (None: every block)
    cv: int = 5  # grouped folds for the probe
    probe_c: float = 0.1  # inverse L2 strength on standardised activations (few items, many dims)
    n_boot: int = 1000
    n_bins: int = 10  # calibration bins
    reporting: bool = True  # the probe axis's reportability (run_reporting); off saves ~20 s
    reporting_draws: int = 8
    reporting_n: tuple[int, ...] = (0, 2, 4, 8, 16)
    heads: dict[str, str] = field(default_factory=dict)  # model name -> trained reward head dir
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        lows = {"n_arithmetic": 0, "n_facts": 0, "n_shots": 0, "cv": 2, "n_boot": 1, "n_bins": 1, "reporting_draws": 1,
                "batch_size": 1, "seed": 0}
        for name, low in lows.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}.")
        if self.n_shots > len(SHOTS):
            raise ValueError(f"n_shots must be at most {len(SHOTS)} (the worked examples there are), not {self.n_shots}.")
        if not (isinstance(self.probe_c, (int, float)) and math.isfinite(self.probe_c) and self.probe_c > 0):
            raise ValueError(f"probe_c must be a finite number > 0, not {self.probe_c!r}.")
        if self.probe_at != "answer" and self.probe_at not in FOLLOW_UPS:
            raise ValueError(f"probe_at={self.probe_at!r}: use 'answer' or one of {list(FOLLOW_UPS)}.")
        if not self.levels or any(level not in LEVELS for level in self.levels):
            raise ValueError(f"levels must be arithmetic difficulty levels {sorted(LEVELS)}, not {list(self.levels)}.")
        if not self.reporting_n or any(not isinstance(n, int) or n < 0 for n in self.reporting_n):
            raise ValueError(f"reporting_n must be example counts >= 0, not {list(self.reporting_n)}.")
        if self.layers is not None and any(not isinstance(L, int) or L < 0 for L in self.layers):
            raise ValueError(f"layers must be block numbers >= 0 (or None: every block), not {list(self.layers)}.")

    @classmethod
    def quick(cls, **overrides) -> "AtlasConfig":
        """Demo sizes: 24 items, fewer resamples and draws (about a minute on gemma-3-270m)."""
        return cls(**{**dict(n_arithmetic=12, n_facts=12, n_boot=300, reporting_draws=4,
                             reporting_n=(0, 2, 4, 8)), **overrides})

    @classmethod
    def from_dict(cls, data: dict) -> "AtlasConfig":
        """The config `asdict` wrote (lists back to tuples)."""
        tuples = {"levels", "layers", "reporting_n"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})


@dataclass
class AtlasResult:
    """One profile per model (`signals`, `accuracy`, `gap`, `probe`, `reportability`, per-item rows)."""

    models: list[dict]
    config: AtlasConfig
    command: str
    seconds: float = 0.0
    out: str | None = None
    multiplicity: dict = field(default_factory=dict)  # the family of AUROC tests (`metalens.analyses.atlas_family`)
    training_overlap: dict = field(default_factory=dict)  # items kept apart from post-training problems

    def profile(self, model: str) -> dict:
        """The profile of `model` (its name as given)."""
        for p in self.models:
            if p["model"] == model:
                return p
        raise KeyError(f"No model {model!r} in this atlas; it has {[p['model'] for p in self.models]}.")

    def signal(self, model: str, name: str) -> dict:
        """One signal's entry (name, kind, auroc with its interval, calibration, deltas) for `model`."""
        found = [s for s in self.profile(model)["signals"] if s["name"] == name]
        if not found:
            raise KeyError(f"No signal {name!r} for {model}; it has {[s['name'] for s in self.profile(model)['signals']]}.")
        return found[0]

    def item_rows(self) -> list[dict]:
        """One row per (model, item): item_id, model, the item, the model's choice, correct, `scores` by signal."""
        return [{"model": p["model"], **row} for p in self.models for row in p["items"]]

    def save(self, path) -> Path:
        """Write atlas.json, items.jsonl (every per-item reading, from which each AUROC recomputes) and atlas.html."""
        from metalens.analyses.atlas_report import write_atlas_html
        from metalens.report import to_jsonable

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / ITEMS_FILE).write_text("".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n"
                                               for r in self.item_rows()))
        save_json(path / "atlas.json", {
            "format": {"name": "atlas", "version": FORMAT_VERSION}, "command": self.command,
            "config": asdict(self.config), "seconds": self.seconds, "multiplicity": self.multiplicity,
            "training_overlap": self.training_overlap,
            "per_item": {"file": ITEMS_FILE, "rows": len(self.item_rows()),
                         "recompute": "per model: metalens.stats.auroc(correct, scores[signal name])"},
            "models": self.models})
        write_atlas_html(path / "atlas.html", self)
        return path

    @classmethod
    def load(cls, path) -> "AtlasResult":
        """The atlas `save` wrote into `path`."""
        file = Path(path) / "atlas.json"
        if not file.exists():
            raise FileNotFoundError(f"No atlas.json in {path}: point at a `metalens atlas --out DIR` directory.")
        data = json.loads(file.read_text())
        version = data.get("format", {}).get("version", 1)
        if version > FORMAT_VERSION:
            raise ValueError(f"{file} is format version {version}; this metalens reads up to {FORMAT_VERSION}: "
                             "upgrade metalens to read it.")
        return cls(data["models"], AtlasConfig.from_dict(data["config"]), data["command"], data["seconds"], str(path),
                   data.get("multiplicity", {}), data.get("training_overlap", {}))


def atlas_items(config: AtlasConfig, exclude=()) -> list[Item]:
    """The battery's items: arithmetic (none of the expressions in `exclude`), then shipped facts, then the
    user's file. The arithmetic seed stream is `ARITHMETIC_SEED + seed`, apart from the small seeds
    post-training and its held-out split use; `exclude` makes the disjointness exact."""
    facts = shipped_facts()
    if not 0 <= config.n_facts <= len(facts):
        raise ValueError(f"n_facts={config.n_facts}: the shipped set has {len(facts)} facts; add more with items=FILE.")
    items = (arithmetic_items(config.n_arithmetic, config.levels, ARITHMETIC_SEED + config.seed, exclude)
             if config.n_arithmetic else [])
    items += facts[: config.n_facts]
    if config.items:
        items += read_items(config.items)
    if len(items) < 4:
        raise ValueError(f"Only {len(items)} items: raise n_arithmetic / n_facts or pass items=FILE.")
    return items


def excluded_overlap(config: AtlasConfig, exclude) -> int:
    """How many arithmetic items the same draw would have taken from `exclude` without the check."""
    if not config.n_arithmetic or not exclude:
        return 0
    drawn = arithmetic_items(config.n_arithmetic, config.levels, ARITHMETIC_SEED + config.seed)
    return sum(it.question.removeprefix("What is ").removesuffix("?") in exclude for it in drawn)


def atlas_command(models: list[str], config: AtlasConfig, out) -> str:
    """The `metalens atlas` command line that makes this atlas (options that differ from the defaults)."""
    parts = ["metalens", "atlas"] + [f"--model {m}" for m in models] + [f"--out {out}"]
    default = AtlasConfig()
    for f in fields(AtlasConfig):
        value = getattr(config, f.name)
        if value == getattr(default, f.name):
            continue
        flag = "--data" if f.name == "items" else "--" + f.name.replace("_", "-")
        if f.name == "heads":
            parts += [f"--head {m}={p}" for m, p in value.items()]
        elif isinstance(value, bool):
            parts.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        elif isinstance(value, tuple):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)
