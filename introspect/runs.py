"""What the train, eval and sample workflows share: the hidden-state cache, splits by question,
and a trained head found again with its rollouts and (mode `lora`) its adapter."""
from __future__ import annotations

import json
import random
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metalens.introspect.bins import BinSpec
from metalens.introspect.features import Positions, rollout_positions
from metalens.introspect.head import ReservedHead
from metalens.introspect.rollouts import load_rollouts
from metalens.report import save_json, write_report


def split_tasks(records: list[dict], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) task indices: whole questions are held out, never single samples."""
    ids = sorted(r["task_index"] for r in records)
    random.Random(seed).shuffle(ids)
    n_test = max(1, round(test_fraction * len(ids)))
    return sorted(ids[n_test:]), sorted(ids[:n_test])


def by_task(positions: Positions, tasks: list[int]) -> Positions:
    """The positions of the questions `tasks` (task indices)."""
    return positions.select(torch.isin(positions.task, torch.tensor(tasks)))


def cache_path(train_dir: Path, mode: str) -> Path:
    """Where hidden states are cached next to the head; `lora` heads read the adapted model's states."""
    return Path(train_dir) / ("positions.safetensors" if mode == "head" else f"positions_{mode}.safetensors")


def cached_positions(model, records: list[dict], spec: BinSpec, cache: Path | None,
                     progress: bool = True) -> Positions:
    """All rollout positions, read from `cache` when it holds these rollouts' states, else computed
    (and written there), so eval and sample need no second pass over the rollouts."""
    if cache is not None and cache.exists():
        positions = Positions(**load_file(cache))
        n_tokens = sum(len(c) for r in records for c in r["completions"] if c)
        if len(positions.bin) == n_tokens:
            return positions  # else the cache belongs to other rollouts: recompute
    positions = rollout_positions(model, records, spec, progress=progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: getattr(positions, k).contiguous() for k in positions.__dataclass_fields__}, cache)
    return positions


def is_complete(rollouts: Path) -> bool:
    """True when `rollouts` is a finished rollout store."""
    manifest = Path(rollouts) / "manifest.json"
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("complete"))


def load_trained(head_dir, rollouts=None) -> tuple[ReservedHead, list[dict], Path]:
    """A head written by `run_train`, its rollout records and the path of its hidden-state cache."""
    head = ReservedHead.load(head_dir)
    records = load_rollouts(rollouts or head.metadata["rollouts"])
    return head, records, cache_path(Path(head_dir).parent, head.metadata.get("mode", "head"))


def adapted(model, head: ReservedHead, head_dir):
    """The LoRA adapter a `lora` head was trained with, injected for the block (else nothing)."""
    if head.metadata.get("mode") != "lora":
        return nullcontext()
    from metalens.introspect.lora import adapter_applied

    return adapter_applied(model, Path(head_dir).parent / "adapter")


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
