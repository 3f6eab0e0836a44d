"""Compatibility fixtures for metalens.sae, written (and checked) by SAELens itself.

SAELens pins transformer-lens < 4, so it lives in its own environment, outside the repository:

    python3 -m venv /tmp/saelens-env
    /tmp/saelens-env/bin/pip install torch==2.13.0 sae-lens      # the CPU torch wheel, then SAELens

Write the fixtures (three SAEs, d_in 64, d_sae 128, seeded random weights, saved with SAELens'
own `save_model`, plus a held-out batch and SAELens' `encode` / `decode` of it):

    /tmp/saelens-env/bin/python tools/sae_fixture/make_fixture.py write tests/fixtures/sae

    standard: ReLU, apply_b_dec_to_input, normalize_activations="layer_norm"
    topk:     k=8, rescale_acts_by_decoder_norm, normalize_activations="constant_norm_rescale"
    jumprelu: thresholds in [0, 1), apply_b_dec_to_input, no normalisation

The reverse check: metalens writes SAEs (`.venv/bin/python tools/sae_fixture/export_metalens.py
/tmp/ml-saes`), and SAELens loads each with `SAE.load_from_disk` and encodes the batch metalens
encoded:

    /tmp/saelens-env/bin/python tools/sae_fixture/make_fixture.py check /tmp/ml-saes

Last run by hand, 2026-12-07 (sae-lens 6.54.12, transformer-lens 3.9.0, torch 2.13.0+cpu), `check`
on the seven SAEs export_metalens.py wrote (the three fixtures re-saved by metalens, a JumpReLU with
layer-norm input, a TopK subtracting b_dec, a ReLU transcoder, a JumpReLU skip transcoder): SAELens
loaded each as the right class (StandardSAE, TopKSAE, JumpReLUSAE, Transcoder,
JumpReLUSkipTranscoder); features identical (max abs difference 0.0), reconstructions within
7.15e-07 (float32), same active set everywhere.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

D_IN, D_SAE, N_HELD_OUT = 64, 128, 32


def _metadata(arch: str):
    from sae_lens.saes.sae import SAEMetadata

    return SAEMetadata(model_name="tiny-gemma3", hook_name="blocks.1.hook_resid_post", hook_head_index=None)


def _build(arch: str, gen: torch.Generator):
    from sae_lens import (JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE,
                          TopKSAEConfig)

    if arch == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                            normalize_activations="layer_norm", metadata=_metadata(arch)))
    elif arch == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8, apply_b_dec_to_input=False,
                                    rescale_acts_by_decoder_norm=True,
                                    normalize_activations="constant_norm_rescale", metadata=_metadata(arch)))
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True,
                                            metadata=_metadata(arch)))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=gen) / D_SAE**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(D_SAE, generator=gen))
        sae.b_dec.copy_(0.1 * torch.randn(D_IN, generator=gen))
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(D_SAE, generator=gen))
    return sae


def write(root: Path) -> None:
    """Each architecture into root/<arch>/: SAELens' files and heldout.safetensors (x, features, recon)."""
    for i, arch in enumerate(("standard", "topk", "jumprelu")):
        gen = torch.Generator().manual_seed(1000 + i)
        sae = _build(arch, gen).eval()
        out = root / arch
        sae.save_model(out)
        x = torch.randn(N_HELD_OUT, D_IN, generator=gen) * 3 + 0.5  # [batch, d_in]
        with torch.no_grad():
            features = sae.encode(x)  # [batch, d_sae]
            recon = sae.decode(features)  # [batch, d_in]
        save_file({"x": x, "features": features.contiguous(), "recon": recon.contiguous()},
                  str(out / "heldout.safetensors"))
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
