"""Sharded, resumable activation files: safetensors shards plus a `manifest.json`."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metalens.activations import Activations, concat
from metalens.artifact import read_json

_PART_KEYS = ("num_shards", "shard_index", "complete", "shards", "n_texts")

FORMAT = "metalens.activations/1"
MANIFEST = "manifest.json"


def part_names(shard_index: int, num_shards: int) -> tuple[str, str]:
    """(manifest file name, shard file prefix) for one process's part of a capture."""
    if num_shards == 1:
        return MANIFEST, "shard"
    tag = f"part{shard_index:03d}-of-{num_shards:03d}"
    return f"manifest.{tag}.json", f"{tag}-shard"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)  # atomic: a killed run never leaves half a manifest


class ShardWriter:
    """Writes one shard per batch; on restart with the same config it skips finished shards.

    `write` hands the batch to a background thread and returns, so the file is written while the next
    batch is computed; at most one write is in flight (two batches in memory). The manifest names a
    shard only once its file is complete. A failed write raises at the next `write`, `flush` or
    `finish`; `flush` waits for the write in flight (call it before giving up on a run, so the last
    finished batch is kept).
    """

    def __init__(self, out: str | Path, config: dict):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metalens-shards")
        self._pending: Future | None = None
        self._queued = 0  # shards handed to the thread, written or not
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest_name, self.prefix = part_names(config["shard_index"], config["num_shards"])
        self.manifest = {"format": FORMAT, **config, "complete": False, "shards": []}
        path = self.out / self.manifest_name
        if path.exists():
            old = json.loads(path.read_text())
            progress = ("complete", "shards", "n_tokens")
            old_config = {k: v for k, v in old.items() if k not in progress}
            new_config = {k: v for k, v in self.manifest.items() if k not in progress}
            if old_config != new_config:
                changed = sorted(k for k in new_config.keys() | old_config.keys() if old_config.get(k) != new_config.get(k))
                raise ValueError(
                    f"{self.out} already holds a capture made with other arguments (differs in "
                    f"{changed}). Use another --out directory, or delete this one to start over."
                )
            self.manifest["shards"] = self._verified(old["shards"])
        self._queued = len(self.manifest["shards"])

    def _verified(self, shards: list[dict]) -> list[dict]:
        kept = []
        for shard in shards:  # keep the prefix of shards whose files are intact
            file = self.out / shard["file"]
            if not file.exists() or sha256(file) != shard["sha256"]:
                break
            kept.append(shard)
        return kept

    def done(self, batch_index: int) -> bool:
        return batch_index < len(self.manifest["shards"])

    def write(self, batch_index: int, start: int, acts: Activations) -> None:
        """Queue batch `batch_index` (the next in order) for writing; raises an earlier write's error."""
        if batch_index != self._queued:
            raise ValueError(f"Shards are written in order: expected batch {self._queued}, got {batch_index}.")
        self.flush()
        self._queued += 1
        self._pending = self._pool.submit(self._write, batch_index, start, acts)

    def flush(self) -> None:
        """Wait for the write in flight; re-raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, batch_index: int, start: int, acts: Activations) -> None:
        name = f"{self.prefix}-{batch_index:05d}.safetensors"
        tensors = {f"site/{k}": v.contiguous() for k, v in acts.acts.items()}
        tensors["token_counts"] = acts.token_counts
        tmp = self.out / (name + ".tmp")
        save_file(tensors, tmp)
        os.replace(tmp, self.out / name)
        self.manifest["shards"].append(
            {
                "file": name,
                "start": start,
                "stop": start + len(acts),
                "tokens": int(acts.token_counts.sum()),
                "sha256": sha256(self.out / name),
            }
        )
        _write_json(self.out / self.manifest_name, self.manifest)

    def finish(self) -> Path:
        """Wait for the last write, then mark the capture complete."""
        self.flush()
        self._pool.shutdown()
        self.manifest["complete"] = True
        self.manifest["n_tokens"] = sum(s["tokens"] for s in self.manifest["shards"])
        _write_json(self.out / self.manifest_name, self.manifest)
        return self.out / self.manifest_name


def merge_manifests(out: str | Path) -> Path:
    """Merge the part manifests of a multi-process capture into one `manifest.json`."""
    out = Path(out)
    parts = sorted(out.glob("manifest.part*-of-*.json"))
    if not parts:
        raise FileNotFoundError(f"No part manifests (manifest.partIII-of-NNN.json) in {out}.")
    manifests = []
    for part in parts:
        manifest = read_json(part, "part manifest")
        missing = [k for k in _PART_KEYS if k not in manifest]
        if missing:
            raise ValueError(f"{part} lacks {missing}: it is not a part manifest `metalens capture --num-shards` wrote; "
                             "rerun that part.")
        manifests.append(manifest)
    num_shards = manifests[0]["num_shards"]
    indices = sorted(m["shard_index"] for m in manifests)
    if indices != list(range(num_shards)):
        missing = sorted(set(range(num_shards)) - set(indices))
        raise ValueError(f"Cannot merge {out}: parts {missing} of {num_shards} have not been written yet.")
    unfinished = [m["shard_index"] for m in manifests if not m["complete"]]
    if unfinished:
        raise ValueError(f"Cannot merge {out}: parts {unfinished} are unfinished; rerun them to resume.")
    skip = ("shard_index", "text_range", "complete", "shards", "n_tokens")
    shared = {k: v for k, v in manifests[0].items() if k not in skip}
    for m in manifests[1:]:
        if {k: v for k, v in m.items() if k not in skip} != shared:
            raise ValueError(f"Cannot merge {out}: the parts were captured with different arguments.")
    manifests.sort(key=lambda m: m["shard_index"])
    shards = [s for m in manifests for s in m["shards"]]
    merged = {**shared, "shard_index": 0, "num_shards": 1, "merged_from": num_shards,
              "text_range": [0, shared["n_texts"]],
              "complete": True, "shards": shards, "n_tokens": sum(s["tokens"] for s in shards)}
    _write_json(out / MANIFEST, merged)
    return out / MANIFEST


def read_manifest(out: str | Path) -> dict:
    """The manifest of a capture directory; raises with the fix if it is missing or unfinished."""
    path = Path(out) / MANIFEST
    if not path.exists():
        if list(Path(out).glob("manifest.part*")):
            raise FileNotFoundError(f"{out} holds parts of a multi-process capture: run `metalens merge {out}` first.")
        raise FileNotFoundError(f"No {MANIFEST} in {out}: is it a metalens capture directory?")
    manifest = read_json(path, "capture manifest")
    if not manifest.get("complete"):
        raise ValueError(f"The capture in {out} is unfinished: rerun the same command to resume it.")
    return manifest


def iter_shards(out: str | Path, verify: bool = True):
    """Yield each shard of a finished capture as `Activations`, one at a time, in text order."""
    manifest = read_manifest(out)
    for shard in manifest["shards"]:
        file = Path(out) / shard["file"]
        if verify and sha256(file) != shard["sha256"]:
            raise ValueError(f"{file} does not match its checksum in the manifest: recapture it.")
        tensors = load_file(file)
        acts = {k.removeprefix("site/"): v for k, v in tensors.items() if k.startswith("site/")}
        yield Activations(acts, tensors["token_counts"], manifest["positions"], {"model": manifest["model"]})


def load_activations(out: str | Path) -> Activations:
    """Load a whole finished capture directory into memory."""
    manifest = read_manifest(out)
    parts = list(iter_shards(out))
    if not parts:
        return Activations({s: torch.empty(0) for s in manifest["sites"]}, torch.empty(0, dtype=torch.long), manifest["positions"])
    acts = concat(parts)
    acts.metadata = {k: v for k, v in manifest.items() if k not in ("shards",)}
    return acts
