"""The SAELens compatibility fixtures, rebuilt at test time instead of tracked as weights.

sae-lens (which pins transformer-lens < 4, so it runs in its own environment) wrote three small SAEs
with seeded weights (`tools/sae_fixture/make_fixture.py`). What it wrote is kept as text under
tests/fixtures/sae/<arch>/: its `cfg.json`, the JSON header of its `sae_weights.safetensors` with the
file's sha256 (`weights.json`), and checksums of its own encode / decode of a seeded held-out batch
(`heldout.json`). `materialize` regenerates the weights from the same seeds and rebuilds the weights
file byte for byte, refusing if its sha256 is not the one sae-lens's file had: the test then reads
exactly the file sae-lens wrote. The recipe below is the one make_fixture.py used to write them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import torch
from torch import Tensor

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sae"
ARCHS = ("standard", "topk", "jumprelu")
D_IN, D_SAE, N_HELD_OUT = 64, 128, 32


def seeded_tensors(arch: str) -> tuple[dict[str, Tensor], Tensor]:
    """The fixture's weights {name: tensor} and held-out batch x `[N_HELD_OUT, D_IN]`, from seed 1000 + i."""
    gen = torch.Generator().manual_seed(1000 + ARCHS.index(arch))
    weights = {"W_enc": torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5,
               "W_dec": torch.randn(D_SAE, D_IN, generator=gen) / D_SAE**0.5,
               "b_enc": 0.1 * torch.randn(D_SAE, generator=gen),
               "b_dec": 0.1 * torch.randn(D_IN, generator=gen)}
    if arch == "jumprelu":
        weights["threshold"] = torch.rand(D_SAE, generator=gen)
    x = torch.randn(N_HELD_OUT, D_IN, generator=gen) * 3 + 0.5  # drawn after the weights, as when written
    return weights, x


def weights_record(path: Path) -> dict:
    """{header, sha256} of a safetensors file: its JSON header as written and the whole file's digest."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return {"header": raw[8:8 + n].decode("utf-8"), "sha256": hashlib.sha256(raw).hexdigest()}


def checksums(features: Tensor, recon: Tensor) -> dict:
    """Row-wise summaries of features `[batch, d_sae]` and reconstructions `[batch, d_in]`, and a digest
    of which features are active: enough to tell a different encoder, threshold or normalisation."""
    active = (features > 0).to(torch.uint8).contiguous()
    return {"active_sha256": hashlib.sha256(active.numpy().tobytes()).hexdigest(),
            "l0": active.sum(-1).tolist(),
            "features_sum": features.sum(-1).tolist(), "features_sq": features.pow(2).sum(-1).tolist(),
            "features_argmax": features.argmax(-1).tolist(), "features_max": features.max(-1).values.tolist(),
            "recon_sum": recon.sum(-1).tolist(), "recon_sq": recon.pow(2).sum(-1).tolist()}


def materialize(arch: str, dest: Path) -> Path:
    """dest/<arch>/ with sae-lens's cfg.json and its weights file rebuilt byte for byte (sha256 checked)."""
    src, out = FIXTURES / arch, Path(dest) / arch
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "cfg.json", out / "cfg.json")
    record = json.loads((src / "weights.json").read_text())
    header = record["header"].encode("utf-8")
    entries = {k: v for k, v in json.loads(header).items() if k != "__metadata__"}
    weights, _ = seeded_tensors(arch)
    assert sorted(entries) == sorted(weights), f"{arch}: the recipe's tensors differ from sae-lens's file"
    data = b"".join(weights[k].contiguous().numpy().tobytes()
                    for k in sorted(entries, key=lambda k: entries[k]["data_offsets"][0]))
    raw = struct.pack("<Q", len(header)) + header + data
    digest = hashlib.sha256(raw).hexdigest()
    if digest != record["sha256"]:
        raise AssertionError(f"{arch}: rebuilt weights file has sha256 {digest}, sae-lens's had {record['sha256']} "
                             "(did torch's seeded randn change?): rewrite the fixtures with make_fixture.py")
    (out / "sae_weights.safetensors").write_bytes(raw)
    return out


def expected(arch: str) -> dict:
    """sae-lens's checksums of its own encode / decode of the held-out batch (see `checksums`)."""
    return json.loads((FIXTURES / arch / "heldout.json").read_text())
