"""Planted label noise: a copy of a rollout store whose correctness labels are flipped on a known,
seeded share of samples, for the ZIP-RC sensitivity check.

Each sample's label is flipped with probability f = (1 - strength) / 2, independently, by a seeded
generator. Flipping with probability f is the same as keeping the graded reward with probability
1 - 2f and drawing a fair coin otherwise, so `strength` = 1 - 2f is the label's reliability: 1 keeps
every graded reward (the store as published), 0 makes every label a fair coin that does not look at
the sample (nothing left to detect). The copy holds the same manifest and rollouts.jsonl byte for
byte, plus `planted.json` naming the flipped samples; `load_rollouts` applies those flips after
re-grading, so every workflow (train, eval, sample) reads the planted labels through the one loader.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

UNIT = ("label reliability 1 - 2 x flip share: each sample's correctness label is the graded reward with "
        "probability (1 + strength) / 2, else its opposite (0: fair coins that ignore the sample; 1: the graded "
        "rewards as published)")
PLANTED_FILE = "planted.json"
STORE_FILES = ("manifest.json", "rollouts.jsonl")


def check_reliability(strength: float) -> float:
    """`strength` as a float in [0, 1]; raises naming the bad value."""
    value = float(strength)
    if not 0 <= value <= 1:
        raise ValueError(f"Label reliability must be in [0, 1] (0: coin-flip labels, 1: the graded rewards), "
                         f"got {strength!r}.")
    return value


def flip_mask(n_samples: list[int], strength: float, seed: int) -> list[list[bool]]:
    """Per question (in task-index order), per sample: flip its label? Each with probability
    (1 - strength) / 2, from one seeded generator, so the same (strength, seed) flips the same samples."""
    share = (1 - check_reliability(strength)) / 2
    rng = np.random.default_rng(seed)
    draws = rng.random(sum(n_samples)) < share  # [n_total_samples]
    out, start = [], 0
    for n in n_samples:
        out.append(draws[start : start + n].tolist())
        start += n
    return out


def plant_label_noise(store: str | Path, out: str | Path, strength: float, seed: int) -> Path:
    """Copy the finished rollout store `store` to `out` with labels of reliability `strength` (see
    `UNIT`); `seed` picks which samples flip. Returns `out`, a store every workflow takes as `rollouts`."""
    from metalens.introspect.rollouts.store import load_rollouts

    strength = check_reliability(strength)
    store, out = Path(store), Path(out)
    records = load_rollouts(store)  # refuses unfinished or altered stores, names the fix
    if (store / PLANTED_FILE).exists():
        raise ValueError(f"{store} already holds planted labels ({PLANTED_FILE}): plant into a copy of the original "
                         "store instead.")
    masks = flip_mask([len(r["rewards"]) for r in records], strength, seed)
    flips = [[r["task_index"], j] for r, mask in zip(records, masks) for j, f in enumerate(mask) if f]
    n_total = sum(len(m) for m in masks)
    out.mkdir(parents=True, exist_ok=True)
    for name in STORE_FILES:
        shutil.copyfile(store / name, out / name)
    planted = {"strength": strength, "unit": UNIT, "flip_probability": (1 - strength) / 2, "seed": int(seed),
               "source": str(store.resolve()), "n_samples": n_total, "n_flipped": len(flips), "flips": flips}
    tmp = out / f".{PLANTED_FILE}.tmp"
    tmp.write_text(json.dumps(planted))
    os.replace(tmp, out / PLANTED_FILE)
    return out


def read_planted(store: str | Path) -> dict | None:
    """The `planted.json` of a store (what was flipped), None for a store as sampled."""
    path = Path(store) / PLANTED_FILE
    return json.loads(path.read_text()) if path.exists() else None


def apply_flips(records: list[dict], planted: dict | None) -> list[dict]:
    """`records` with the rewards `planted` names flipped (in place; unchanged when None)."""
    if planted is None:
        return records
    by_task = {r["task_index"]: r for r in records}
    for task, j in planted["flips"]:
        by_task[task]["rewards"][j] = 1 - by_task[task]["rewards"][j]
    return records
