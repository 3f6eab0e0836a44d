"""Final-norm hidden states at every response position of stored rollouts, with labels, and their cache."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

import metalens
from metalens.introspect.heads.bins import BinSpec, prefix_labels
from metalens.sites import FINAL_NORM


@dataclass
class Positions:
    """One row per response position of every sample: its hidden state and labels."""

    hidden: Tensor  # [n_pos, d_model] final-norm hidden state predicting that token
    reward: Tensor  # [n_pos] final reward of the rollout (0/1)
    remaining: Tensor  # [n_pos] tokens left, this one included
    bin: Tensor  # [n_pos] joint bin
    task: Tensor  # [n_pos] task index (split by task, never by position)
    sample: Tensor  # [n_pos] global sample index
    frac: Tensor  # [n_pos] t / n_tokens: how far into its response the prefix is

    def select(self, mask: Tensor) -> "Positions":
        """The rows where `mask` [n_pos] is True."""
        return Positions(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def flatten(records: list[dict]) -> list[dict]:
    """One dict per sample: task_index, prompt_ids, completion, reward, text, answer."""
    rows = []
    for r in records:
        for completion, reward, text in zip(r["completions"], r["rewards"], r["texts"]):
            if completion:
                rows.append({"task_index": r["task_index"], "prompt_ids": r["prompt_ids"], "completion": completion,
                             "reward": reward, "text": text, "answer": r["answer"], "level": r["level"]})
    return rows


def final_states(model, ids: Tensor, mask: Tensor) -> Tensor:
    """Final-norm hidden states [batch, pos, d_model]; the pass stops before the unembedding.

    Keeps the autograd graph when called with gradients enabled (the `lora` mode trains through it).
    """
    cache = metalens.run_with_cache(model, ids, mask, sites=[FINAL_NORM], grad=torch.is_grad_enabled())
    return cache[FINAL_NORM]


@torch.no_grad()
def final_hidden(model, sequences: list[list[int]], starts: list[int], lengths: list[int],
                 batch_size: int = 8, progress: bool = False) -> list[Tensor]:
    """For each token sequence, the final-norm hidden states [length, d_model] from position start.

    Runs the blocks only: the pass stops at the final norm (no 262k-vocab unembedding).
    """
    out: list[Tensor] = []
    batches = range(0, len(sequences), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="hidden states", unit="batch")
    for i in batches:
        batch = sequences[i : i + batch_size]
        hidden = final_states(model, *model.pad(batch))
        for j, (start, length) in enumerate(zip(starts[i : i + batch_size], lengths[i : i + batch_size])):
            out.append(hidden[j, start : start + length].float().cpu())
    return out


def rollout_positions(model, records: list[dict], spec: BinSpec, batch_size: int = 8,
                      progress: bool = False) -> Positions:
    """Hidden states and (reward, remaining, bin) labels at every response position."""
    rows = flatten(records)
    if not rows:
        raise ValueError("No non-empty samples in these rollouts.")
    # Response token t is predicted by the hidden state at position prompt_len - 1 + t.
    sequences = [r["prompt_ids"] + r["completion"][:-1] for r in rows]
    starts = [len(r["prompt_ids"]) - 1 for r in rows]
    lengths = [len(r["completion"]) for r in rows]
    hidden = final_hidden(model, sequences, starts, lengths, batch_size, progress)
    parts = {k: [] for k in ("reward", "remaining", "bin", "task", "sample", "frac")}
    for index, (row, n) in enumerate(zip(rows, lengths)):
        labels = prefix_labels(n, row["reward"], spec)
        for k in ("reward", "remaining", "bin"):
            parts[k].append(labels[k])
        parts["task"].append(torch.full((n,), row["task_index"]))
        parts["sample"].append(torch.full((n,), index))
        parts["frac"].append(torch.arange(n) / n)
    return Positions(torch.cat(hidden), *(torch.cat(parts[k]) for k in ("reward", "remaining", "bin", "task", "sample", "frac")))


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
        save_positions(positions, cache, key)
    return positions


def save_positions(positions: Positions, cache: Path, key: dict[str, str]) -> Path:
    """Write `positions` to the safetensors file `cache` under `key` (`cache_key`), as `cached_positions`
    reads it back."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: getattr(positions, k).contiguous() for k in positions.__dataclass_fields__}, cache, metadata=key)
    return cache
