"""Saved artifacts: a directory holding `NAME.safetensors` (tensors) and `NAME.json` (metadata).

Every tensor artifact (probes, axes, steering vectors, rule books, layer sweeps, introspection
heads, circuit scores) saves this way, so the layout, the format version and the missing-file
error are the same everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
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


def read_json(path: str | Path, what: str = "file") -> dict:
    """A JSON object from `path`; a missing, non-UTF-8 or malformed file is one error naming it (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {path}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text: is it the {what} metalens wrote?") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno} is not valid JSON ({err.msg}, column {err.colno}): "
                         f"restore the {what} or rerun the command that wrote it.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not the object a {what} is.")
    return data


def read_artifact(path: str | Path, name: str, hint: str, max_version: int = FORMAT_VERSION, *,
                  expect: dict[str, tuple] | None = None, required: tuple[str, ...] = (),
                  ) -> tuple[dict[str, Tensor], dict]:
    """(tensors, metadata) written by `write_artifact`, checked; errors name the file and the fix.

    Artifacts written before format versions existed read as version 1; a newer version than
    `max_version`, or one that is not an integer, is refused. A missing or unreadable
    `NAME.safetensors`, a non-finite tensor, a tensor in `expect` that is absent or has another shape
    (`{"weight": (None, 640)}`: None matches any size) and a metadata key in `required` that is
    absent are each one ValueError / FileNotFoundError naming the file.
    """
    path = Path(path)
    if not (path / f"{name}.json").exists():
        raise FileNotFoundError(f"No {name}.json in {path}: {hint}")
    meta = read_json(path / f"{name}.json", f"{name} metadata")
    fmt = meta.get("format", {})
    version = fmt.get("version", 1) if isinstance(fmt, dict) else fmt
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path / name}.json declares format version {version!r}; a version is a positive "
                         "integer: the file was edited or written by another tool.")
    if version > max_version:
        raise ValueError(f"{path / name} is format version {version}; this metalens reads up to {max_version}: "
                         "upgrade metalens to read it.")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"{path / name}.json lacks field(s) {missing}: the artifact is incomplete; re-save it.")
    file = path / f"{name}.safetensors"
    tensors: dict[str, Tensor] = {}
    if file.exists():
        try:
            tensors = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{file} cannot be read ({err}): it is truncated or corrupt; re-save the artifact.") from None
    elif expect:
        raise FileNotFoundError(f"{file} is missing beside its {name}.json: copy both files together.")
    for key, shape in (expect or {}).items():
        if key not in tensors:
            raise ValueError(f"{file} holds no tensor '{key}' (has {sorted(tensors)}): re-save the artifact.")
        got = tuple(tensors[key].shape)
        if len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got)):
            want = tuple("*" if w is None else w for w in shape)
            raise ValueError(f"{file}: tensor '{key}' has shape {list(got)}, expected {list(want)} "
                             "(* any): it belongs to another model or was edited.")
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{file}: tensor '{key}' holds NaN or infinite values; re-train or re-save it.")
    return tensors, meta
