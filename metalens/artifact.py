"""Saved artifacts: a directory holding `NAME.safetensors` (tensors) and `NAME.json` (metadata).

Probes, axes, introspection heads and circuit scores all save this way; one pair of functions
keeps the layout and the missing-file error the same everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor


def write_artifact(path: str | Path, name: str, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Write `path/NAME.safetensors` and `path/NAME.json` (non-JSON values as strings); returns `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / f"{name}.safetensors"))
    (path / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str))
    return path


def read_artifact(path: str | Path, name: str, hint: str) -> tuple[dict[str, Tensor], dict]:
    """(tensors, metadata) written by `write_artifact`; FileNotFoundError naming `hint` if absent."""
    path = Path(path)
    if not (path / f"{name}.json").exists():
        raise FileNotFoundError(f"No {name}.json in {path}: {hint}")
    return load_file(str(path / f"{name}.safetensors")), json.loads((path / f"{name}.json").read_text())
