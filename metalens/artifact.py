"""Saved artifacts: a directory holding `NAME.safetensors` (tensors) and `NAME.json` (metadata).

Every tensor artifact (probes, axes, steering vectors, rule books, layer sweeps, introspection
heads, circuit scores) saves this way, so the layout, the format version and the missing-file
error are the same everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT_VERSION = 1  # bump when a reader can no longer read what older writers wrote


def write_artifact(path: str | Path, name: str, tensors: dict[str, Tensor], meta: dict,
                   version: int = FORMAT_VERSION) -> Path:
    """Write `path/NAME.safetensors` and `path/NAME.json` (non-JSON values as strings); returns `path`.

    The metadata records `format: {"name": NAME, "version": version}` so readers can refuse what
    they do not understand.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / f"{name}.safetensors"))
    meta = {**meta, "format": {"name": name, "version": version}}
    (path / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str))
    return path


def read_artifact(path: str | Path, name: str, hint: str, max_version: int = FORMAT_VERSION,
                  ) -> tuple[dict[str, Tensor], dict]:
    """(tensors, metadata) written by `write_artifact`; FileNotFoundError naming `hint` if absent.

    Artifacts written before format versions existed read as version 1; a newer version than
    `max_version` is refused with the fix (upgrade metalens).
    """
    path = Path(path)
    if not (path / f"{name}.json").exists():
        raise FileNotFoundError(f"No {name}.json in {path}: {hint}")
    meta = json.loads((path / f"{name}.json").read_text())
    version = meta.get("format", {}).get("version", 1)
    if version > max_version:
        raise ValueError(f"{path / name} is format version {version}; this metalens reads up to {max_version}: "
                         "upgrade metalens to read it.")
    tensors = load_file(str(path / f"{name}.safetensors")) if (path / f"{name}.safetensors").exists() else {}
    return tensors, meta
