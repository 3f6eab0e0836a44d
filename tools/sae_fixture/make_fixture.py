"""Compatibility fixtures for metalens.sae, written (and checked) by SAELens itself.

SAELens pins transformer-lens < 4, so it lives in its own environment, outside the repository:

    python3 -m venv /tmp/saelens-env
    /tmp/saelens-env/bin/pip install torch==2.13.0 sae-lens      # the CPU torch wheel, then SAELens

Write the fixtures (three SAEs, d_in 64, d_sae 128, seeded random weights, saved with SAELens'
own `save_model`, and SAELens' `encode` / `decode` of a seeded held-out batch). The weights are not
tracked: each tests/fixtures/sae/<arch>/ keeps SAELens' cfg.json, its weights file's JSON header and
sha256 (weights.json) and checksums of its encode / decode (heldout.json); the tests rebuild the
weights file byte for byte from the same seeds (tests/sae_fixture.py holds the recipe both use):

    /tmp/saelens-env/bin/python tools/sae_fixture/make_fixture.py write tests/fixtures/sae

    standard: ReLU, apply_b_dec_to_input, normalize_activations="layer_norm"
    topk:     k=8, rescale_acts_by_decoder_norm, normalize_activations="constant_norm_rescale"
    jumprelu: thresholds in [0, 1), apply_b_dec_to_input, no normalisation

The reverse check: metalens writes SAEs (`.venv/bin/python tools/sae_fixture/export_metalens.py
/tmp/ml-saes`), and SAELens loads each with `SAE.load_from_disk` and encodes the batch metalens
encoded:

    /tmp/saelens-env/bin/python tools/sae_fixture/make_fixture.py check /tmp/ml-saes

Last run by hand, 2026-12-07 (fixtures rewritten in the text form the same day, identical cfg.json,
weights sha256 and checksums; sae-lens 6.54.12, transformer-lens 3.9.0, torch 2.13.0+cpu), `check`
on the seven SAEs export_metalens.py wrote (the three fixtures re-saved by metalens, a JumpReLU with
layer-norm input, a TopK subtracting b_dec, a ReLU transcoder, a JumpReLU skip transcoder): SAELens
loaded each as the right class (StandardSAE, TopKSAE, JumpReLUSAE, Transcoder,
JumpReLUSkipTranscoder); features identical (max abs difference 0.0), reconstructions within
7.15e-07 (float32), same active set everywhere.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from sae_fixture import ARCHS, D_IN, D_SAE, checksums, seeded_tensors, weights_record  # noqa: E402


def _metadata():
    from sae_lens.saes.sae import SAEMetadata

    return SAEMetadata(model_name="tiny-gemma3", hook_name="blocks.1.hook_resid_post", hook_head_index=None)


def _build(arch: str, weights: dict):
    from sae_lens import (JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE,
                          TopKSAEConfig)

    if arch == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                            normalize_activations="layer_norm", metadata=_metadata()))
    elif arch == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8, apply_b_dec_to_input=False,
                                    rescale_acts_by_decoder_norm=True,
                                    normalize_activations="constant_norm_rescale", metadata=_metadata()))
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                            metadata=_metadata()))
    with torch.no_grad():
        for name, value in weights.items():
            getattr(sae, name).copy_(value)
    return sae


def write(root: Path) -> None:
    """Each architecture into root/<arch>/: SAELens' cfg.json, weights.json and heldout.json."""
    for arch in ARCHS:
        weights, x = seeded_tensors(arch)
        sae = _build(arch, weights).eval()
        out = root / arch
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            sae.save_model(tmp)
            saved = load_file(str(Path(tmp) / "sae_weights.safetensors"))
            if sorted(saved) != sorted(weights) or not all(torch.equal(saved[k], weights[k]) for k in saved):
                sys.exit(f"{arch}: SAELens saved other tensors than the recipe's; the tests could not rebuild them.")
            shutil.copy(Path(tmp) / "cfg.json", out / "cfg.json")
            (out / "weights.json").write_text(json.dumps(weights_record(Path(tmp) / "sae_weights.safetensors"),
                                                         indent=1) + "\n")
        with torch.no_grad():
            features = sae.encode(x)  # [batch, d_sae]
            recon = sae.decode(features)  # [batch, d_in]
        (out / "heldout.json").write_text(json.dumps(checksums(features, recon), indent=1) + "\n")
        print(f"{arch}: wrote {out} (L0 {float((features > 0).sum(-1).float().mean()):.1f})")


def check(root: Path) -> None:
    """Load every SAE metalens wrote under root/<name>/ with SAELens; compare encode / decode."""
    from sae_lens import SAE

    worst = 0.0
    folders = sorted(p for p in root.iterdir() if (p / "cfg.json").exists())
    if not folders:
        sys.exit(f"No SAELens folders (cfg.json) under {root}: run tools/sae_fixture/export_metalens.py first.")
    for folder in folders:
        sae = SAE.load_from_disk(folder, device="cpu").eval()
        held = load_file(str(folder / "heldout.safetensors"))
        with torch.no_grad():
            features = sae.encode(held["x"])
            recon = sae(held["x"])  # forward: decode(encode(x)), plus x @ W_skip.T for skip transcoders
        diff_f = (features - held["features"]).abs().max().item()
        diff_r = (recon - held["recon"]).abs().max().item()
        same_support = bool(((features > 0) == (held["features"] > 0)).all())
        worst = max(worst, diff_f, diff_r)
        print(f"{folder.name}: {type(sae).__name__}, max |features diff| {diff_f:.2e}, "
              f"max |recon diff| {diff_r:.2e}, same active set {same_support}")
        if not same_support or diff_f > 1e-4 or diff_r > 1e-4:
            sys.exit(f"{folder.name}: SAELens and metalens disagree.")
    print(f"all {len(folders)} agree; worst max abs difference {worst:.2e} (float32)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit("usage: make_fixture.py write DIR | check DIR")
    (write if sys.argv[1] == "write" else check)(Path(sys.argv[2]))
