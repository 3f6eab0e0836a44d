"""Write SAEs with metalens for SAELens to read back (`make_fixture.py check DIR`).

    .venv/bin/python tools/sae_fixture/export_metalens.py /tmp/ml-saes

Writes DIR/<name>/ (cfg.json + sae_weights.safetensors by `metalens.sae.save_saelens`, and
heldout.safetensors with a batch x, metalens' features of it and its reconstruction
`SAE.forward(x)`): the three SAELens fixtures re-saved, and four dictionaries made by metalens
alone (a JumpReLU with layer-norm input, a TopK with b_dec subtracted, a ReLU transcoder and a
JumpReLU skip transcoder).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from metalens.sae import SAE, load_sae, save_saelens

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from sae_fixture import ARCHS, materialize  # noqa: E402


def _random(gen: torch.Generator, d_in: int = 64, d_sae: int = 128, d_out: int = 64, **kw) -> SAE:
    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    return SAE(W_enc=randn(d_in, d_sae, scale=d_in**-0.5), W_dec=randn(d_sae, d_out, scale=d_sae**-0.5),
               b_enc=randn(d_sae, scale=0.1), b_dec=randn(d_out, scale=0.1), model="tiny-gemma3", **kw)


def main(root: Path) -> None:
    gen = torch.Generator().manual_seed(7)
    with tempfile.TemporaryDirectory() as tmp:  # the SAELens fixtures, rebuilt from their seeds
        saes = {f"resaved-{arch}": load_sae(materialize(arch, Path(tmp))) for arch in ARCHS}
    saes["metalens-jumprelu-layernorm"] = _random(
        gen, architecture="jumprelu", threshold=torch.rand(128, generator=gen), site="blocks.1.hook_resid_post",
        apply_b_dec_to_input=True, normalize_activations="layer_norm")
    saes["metalens-topk"] = _random(gen, architecture="topk", k=5, site="blocks.2.hook_resid_post",
                                    apply_b_dec_to_input=True)
    saes["metalens-transcoder"] = _random(gen, d_out=48, site="blocks.1.hook_resid_mid",
                                          out_site="blocks.1.hook_mlp_out")
    saes["metalens-jumprelu-skip-transcoder"] = _random(
        gen, d_out=48, architecture="jumprelu", threshold=torch.rand(128, generator=gen),
        W_skip=torch.randn(64, 48, generator=gen) * 0.1, site="blocks.1.hook_resid_mid",
        out_site="blocks.1.hook_mlp_out")
    for name, sae in saes.items():
        x = torch.randn(32, sae.d_in, generator=gen) * 3 + 0.5  # [batch, d_in]
        save_saelens(sae, root / name)
        save_file({"x": x, "features": sae.encode(x).contiguous(), "recon": sae.forward(x).contiguous()},
                  str(root / name / "heldout.safetensors"))
        print(f"{name}: {sae.architecture}{' transcoder' if sae.is_transcoder else ''} -> {root / name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: export_metalens.py DIR")
    main(Path(sys.argv[1]))
