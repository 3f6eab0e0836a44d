"""What the train, eval and sample workflows share: the hidden-state cache, splits by question,
and a trained head found again with its rollouts and (mode `lora`) its adapter."""
from __future__ import annotations

import hashlib
import json
import random
import re
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metalens.introspect.bins import BinSpec
from metalens.introspect.features import Positions, rollout_positions
from metalens.introspect.head import ReservedHead
from metalens.introspect.rollouts import load_rollouts
from metalens.report import save_json, write_report


_ARITHMETIC = re.compile(r"What is ([-\d\s+*]+)\?")


def problem_unit(prompt: str) -> str:
    """The unit a question can leak through: for "What is a op b ...?" the unordered multiset of its
    operands, so commuted twins (3 + 4, 4 + 3) fall on one side of every split; else the prompt."""
    match = _ARITHMETIC.search(prompt)
    if match is None:
        return prompt
    return "operands " + " ".join(sorted(re.findall(r"\d+", match.group(1)), key=int))


def problem_units(records: list[dict]) -> dict[int, int]:
    """Task index -> id of its unit (`problem_unit`): the groups splits, folds and bootstraps respect."""
    ids: dict[str, int] = {}
    return {r["task_index"]: ids.setdefault(problem_unit(r["prompt"]), len(ids)) for r in records}


def split_tasks(records: list[dict], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) task indices: whole units of questions (`problem_units`) are held out together,
    never single samples or one of two commuted twins."""
    unit_of = problem_units(records)
    units = sorted(set(unit_of.values()))
    random.Random(seed).shuffle(units)
    n_test = min(len(units) - 1, max(1, round(test_fraction * len(units))))
    held = set(units[:n_test])
    tasks = sorted(unit_of)
    return [t for t in tasks if unit_of[t] not in held], [t for t in tasks if unit_of[t] in held]


def by_task(positions: Positions, tasks: list[int]) -> Positions:
    """The positions of the questions `tasks` (task indices)."""
    return positions.select(torch.isin(positions.task, torch.tensor(tasks)))


def cache_path(train_dir: Path, mode: str) -> Path:
    """Where hidden states are cached next to the head; `lora` heads read the adapted model's states."""
    return Path(train_dir) / ("positions.safetensors" if mode == "head" else f"positions_{mode}.safetensors")


def cache_key(model, records: list[dict], spec: BinSpec) -> dict[str, str]:
    """What a hidden-state cache must match: the model, its revision, the bins and a hash of the
    rollouts (prompt and completion ids and the rewards, after re-grading)."""
    content = [(r["task_index"], r["prompt_ids"], r["completions"], r["rewards"]) for r in records]
    return {"model": str(model.name), "revision": str(model.revision), "spec": json.dumps(spec.to_dict()),
            "rollouts_sha256": hashlib.sha256(json.dumps(content).encode()).hexdigest()}


def cached_positions(model, records: list[dict], spec: BinSpec, cache: Path | None,
                     progress: bool = True) -> Positions:
    """All rollout positions, read from `cache` when it was written for this model, revision, bins
    and these rollouts (`cache_key`), else computed (and written there with that key), so eval and
    sample need no second pass over the rollouts."""
    key = cache_key(model, records, spec)
    if cache is not None and cache.exists():
        from safetensors import safe_open

        with safe_open(str(cache), framework="pt") as handle:
            stored = handle.metadata() or {}
        if all(stored.get(k) == v for k, v in key.items()):
            return Positions(**load_file(cache))  # else another model's or other rollouts' states: recompute
    positions = rollout_positions(model, records, spec, progress=progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: getattr(positions, k).contiguous() for k in positions.__dataclass_fields__}, cache,
                  metadata=key)
    return positions


def is_complete(rollouts: Path) -> bool:
    """True when `rollouts` is a finished rollout store."""
    manifest = Path(rollouts) / "manifest.json"
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("complete"))


def load_trained(head_dir, rollouts=None, cv: int = 0) -> tuple[ReservedHead, list[dict], Path]:
    """A head written by `run_train`, its rollout records and the path of its hidden-state cache.

    `cv` >= 2 on a `lora` head is refused: its adapter was trained on most of every fold's test
    questions, so heads re-fitted per fold on its states would not be out of fold.
    """
    head = ReservedHead.load(head_dir)
    mode = head.metadata.get("mode", "head")
    if cv and mode in ("lora", "full"):
        what = "adapter was" if mode == "lora" else "weights were"
        raise ValueError(f"cv={cv} on the {mode} head {head_dir}: its {what} trained on the questions the folds "
                         "would hold out, so the scores would not be out of fold. Drop --cv (the held-out split "
                         "is sound), or cross-validate a mode 'head' run.")
    records = load_rollouts(rollouts or head.metadata["rollouts"])
    return head, records, cache_path(Path(head_dir).parent, head.metadata.get("mode", "head"))


def adapted(model, head: ReservedHead, head_dir):
    """The model a head was trained with, for the block: a `lora` head's adapter injected, a `full`
    head's weights loaded (the originals restored on exit); nothing for a `head` head."""
    mode = head.metadata.get("mode")
    if mode == "full":
        from metalens.introspect.full import FullWeights, weights_applied

        return weights_applied(model, FullWeights.load(Path(head_dir).parent / "weights"))
    if mode != "lora":
        return nullcontext()
    from metalens.introspect.lora import adapter_applied

    return adapter_applied(model, Path(head_dir).parent / "adapter")


def same_store(a, b) -> bool:
    """True when two rollout directories are the same place."""
    return Path(a).resolve() == Path(b).resolve()


def write_results(out, title: str, data: dict, metadata: dict, sections: list) -> Path:
    """Write `out/results.json` (data plus metadata) and `out/report.html`; returns `out`."""
    out = Path(out)
    save_json(out / "results.json", {**data, "metadata": metadata})
    write_report(out / "report.html", title, sections, metadata)
    return out


def read_results(out) -> dict:
    """The data of `out/results.json`, or FileNotFoundError saying which run writes it."""
    path = Path(out) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"No results.json in {out}: run the workflow with out= (or its CLI verb) first.")
    return json.loads(path.read_text())


def load_result(cls, config_cls, out):
    """A result dataclass (`cls`, with a `config` field of `config_cls`) from its `out/results.json`."""
    from dataclasses import fields

    data = read_results(out)
    kept = {f.name: data.get(f.name) for f in fields(cls) if f.name != "config"}
    return cls(config=config_cls(**data["config"]), **kept)
