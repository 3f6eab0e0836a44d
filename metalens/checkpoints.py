"""Loading post-training checkpoints: full model directories or LoRA adapters over a base."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import metalens

META_FILE = "metalens-checkpoint.json"


def read_checkpoint_meta(path: str | Path) -> dict:
    """The metadata a post-training run saved beside a checkpoint ({} when there is none)."""
    meta = Path(path) / META_FILE
    return json.loads(meta.read_text()) if meta.exists() else {}


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories of a post-training run, ordered by training step."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.iterdir() if p.is_dir() and (p / META_FILE).exists()]
    if not found:
        raise FileNotFoundError(f"No checkpoints (dirs holding {META_FILE}) under {run_dir}; run `metalens posttrain` first.")
    return sorted(found, key=lambda p: read_checkpoint_meta(p).get("step", 0))


def load_checkpoint(path: str | Path, device=None, dtype: torch.dtype | None = None) -> metalens.Model:
    """A `metalens.Model` from a full model directory, an embedded name, or a LoRA adapter dir.

    An adapter directory (adapter_config.json) is applied to the base model its metadata
    names and merged, so hooks see the plain architecture.
    """
    path_s = str(path)
    p = Path(path_s)
    if not (p / "adapter_config.json").exists():
        return metalens.load_model(path_s, device=device, dtype=dtype)
    from peft import PeftModel

    meta = read_checkpoint_meta(p)
    base_name = meta.get("base_model") or json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = metalens.load_model(base_name, device=device, dtype=dtype)
    merged = PeftModel.from_pretrained(base.hf, path_s).merge_and_unload()
    merged.eval()
    return metalens.Model(merged, base.tokenizer, name=f"{base.name}@{p.name}", revision=f"step{meta.get('step', '?')}")
