"""llama.cpp control-vector GGUF files: write per-layer directions as one, read one (also repeng's) back.

This module knows the file format only (directions and a JSON provenance string); `SteeringVector.to_gguf`
and `SteeringVector.from_gguf` turn vectors into and out of it, so nothing here imports the vector.

Layout (llama.cpp `common_control_vector_load_one` in common/common.cpp, repeng's
`ControlVector.export_gguf` in repeng/extract.py): `general.architecture = "controlvector"`,
`controlvector.model_hint` (a string llama.cpp does not check), `controlvector.layer_count`, and one
1-D float32 tensor `direction.{L}` of length n_embd per steered layer.

Layer numbering. llama.cpp adds `direction.L` to the output of block `L` (0-based): the loader puts
it in row L - 1 of its buffer, `llama_adapter_cvec::apply` copies row il - 1 into `tensors[il]`,
and every model graph calls `build_cvec(cur, il)` on the block's output (after the FFN residual
add, the `l_out` tensor) inside `for il in 0..n_layer-1`. That is metalens'
`blocks.L.hook_resid_post`, the site `SteeringVector` steers, so metalens layer L is written as
`direction.L` unchanged. repeng agrees: its direction L is read from `hidden_states[L + 1]` (the
output of block L) and added by a wrapper around block L. llama.cpp rejects `direction.0` ("invalid
(zero) direction tensor layer index") and allocates no tensor for block 0, so a vector steering
block 0 cannot be exported: `to_gguf` refuses it rather than write a file llama.cpp will skip.

llama.cpp's own generator is one block off from its loader. `llama-cvector-generator`
(tools/cvector-generator: the `l_out` callback, then mean.hpp / pca.hpp) measures block il's output
for il in 0..n_layer-2 and names that direction `direction.(il+1)`; the loader adds `direction.L` to
block L's output, so a generator file steers one block after the one it was measured on (and has no
direction for block n_layer-1). `read_gguf` cannot tell a generator file from repeng's or ours and
maps `direction.L` to layer L, where llama.cpp applies it; to steer a generator's direction at the
block it was measured on, shift it down one: `{L - 1: v for L, v in directions.items()}`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ARCH = "controlvector"
META_KEY = "metalens.steering_vector"  # our provenance (JSON), ignored by llama.cpp and repeng


def _gguf():
    try:
        import gguf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("Control-vector GGUF files need the `gguf` package: pip install gguf") from None
    return gguf


def write_gguf(directions: dict, path: str | Path, model_hint: str, provenance: dict | None = None) -> Path:
    """Write `{layer: [d_model]}` directions to `path` in llama.cpp's control-vector layout; returns `path`.

    Layer 0 is refused (llama.cpp rejects `direction.0`); `provenance` is stored as JSON under
    `metalens.steering_vector` (llama.cpp and repeng ignore it).
    """
    gguf = _gguf()
    if 0 in directions:
        raise ValueError("This vector steers layer 0 (block 0's output), which llama.cpp cannot steer: it rejects "
                         "`direction.0`. Export the other layers with vector.restricted([...]).to_gguf(path).")
    if not directions:
        raise ValueError("This vector has no layers to export.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(f"{ARCH}.model_hint", model_hint)
    writer.add_uint32(f"{ARCH}.layer_count", len(directions))
    if provenance is not None:
        writer.add_string(META_KEY, json.dumps(provenance))
    for layer in sorted(directions):
        direction = directions[layer].detach().float().cpu().numpy().astype(np.float32)
        writer.add_tensor(f"direction.{layer}", direction)  # [d_model]
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _string(reader, key: str) -> str | None:
    field = reader.get_field(key)
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def read_gguf(path: str | Path) -> tuple[dict, dict | None, str]:
    """(directions `{layer: [d_model]}`, our provenance or None, the file's model hint) of a control-vector GGUF.

    `direction.L` becomes layer L, the block whose output llama.cpp adds it to; a file from llama.cpp's
    cvector-generator measured that direction on block L - 1 (see the module docstring).

    Refuses a file that is not a control vector, holds other tensors, direction.0, directions of
    different lengths, or non-finite values, naming the file.
    """
    gguf = _gguf()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No control-vector file at {path}.")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # the gguf package raises assorted errors on a truncated or foreign file
        raise ValueError(f"{path} is not a readable GGUF file ({type(err).__name__}: {err}).") from None
    arch = _string(reader, "general.architecture")
    if arch != ARCH:
        raise ValueError(f"{path} has general.architecture {arch!r}, not '{ARCH}': it is not a control vector.")
    directions = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit():
            raise ValueError(f"{path} holds tensor '{tensor.name}'; a control vector holds only direction.L tensors.")
        data = np.asarray(tensor.data, dtype=np.float32).reshape(-1)  # [d_model]
        directions[int(index)] = torch.from_numpy(data.copy())
    if not directions:
        raise ValueError(f"{path} holds no direction.L tensors.")
    if 0 in directions:
        raise ValueError(f"{path} has direction.0, which llama.cpp rejects (it cannot steer block 0's output).")
    sizes = {v.numel() for v in directions.values()}
    if len(sizes) != 1:
        raise ValueError(f"{path} has directions of different lengths {sorted(sizes)}.")
    bad = [k for k, v in directions.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path} holds NaN or infinite values in direction.{bad[0]}: the file is corrupt.")
    saved = _string(reader, META_KEY)
    try:
        provenance = json.loads(saved) if saved is not None else None
    except ValueError:
        raise ValueError(f"{path}: its {META_KEY} field is not valid JSON.") from None
    return directions, provenance, _string(reader, f"{ARCH}.model_hint") or "unknown"
