"""What a forward pass could cost at best: its matmul FLOPs and weight bytes, the card's peaks, the roofline.

Printed beside each bench arm so a ratio can be read against the hardware, not only against another
arm. The card table holds vendors' datasheet peaks (dense bfloat16 tensor FLOP/s, HBM bandwidth, SXM
parts); a card not in it gets no roofline, only its name. The unit of `forward_work` is one forward
over `n_tokens` tokens, `seq` per row, through the first `n_blocks` blocks (all by default) and,
with `logits=True`, the unembedding.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

# name fragment -> (dense bf16 FLOP/s, bytes/s): NVIDIA datasheets (H100 SXM5, H200 SXM, A100 SXM4 80 GB).
CARDS = {"H200": (989e12, 4.8e12), "H100": (989e12, 3.35e12), "A100": (312e12, 2.039e12)}


@dataclass
class Work:
    """Matmul FLOPs and weight bytes of one forward (activations' traffic left out: small beside weights)."""

    flops: float
    weight_bytes: float

    def to_dict(self) -> dict:
        return asdict(self)


def forward_work(model, n_tokens: int, seq: int, n_blocks: int | None = None, logits: bool = True) -> Work:
    """FLOPs (2 per multiply-add: every Linear in the blocks, attention's QK^T and AV over `seq` keys as the
    eager kernel computes them, and the unembedding when `logits`) and bytes of the weights read once."""
    blocks = list(model.layers)[: model.n_layers if n_blocks is None else n_blocks]
    linear = [m for block in blocks for m in block.modules() if isinstance(m, torch.nn.Linear)]
    params = sum(m.weight.numel() for m in linear)
    width = sum(block.self_attn.config.num_attention_heads * block.self_attn.head_dim for block in blocks)
    flops = 2.0 * params * n_tokens + 4.0 * width * seq * n_tokens
    weight_bytes = float(sum(p.numel() * p.element_size() for block in blocks for p in block.parameters()))
    if logits:
        unembed = model.hf.get_output_embeddings().weight
        flops += 2.0 * unembed.numel() * n_tokens
        weight_bytes += unembed.numel() * unembed.element_size()
    return Work(flops, weight_bytes)


def card_peaks(device: torch.device) -> dict | None:
    """{card, flops, bandwidth} of a CUDA device (peaks None when the card is not in `CARDS`); None on the CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    flops, bandwidth = next((peak for key, peak in CARDS.items() if key in name), (None, None))
    return {"card": name, "flops": flops, "bandwidth": bandwidth}


def roofline_tokens_per_s(work: Work, n_tokens: int, peaks: dict | None) -> float | None:
    """Tokens/s if the forward ran at the card's peak FLOP/s or bandwidth, whichever binds; None without peaks."""
    if not peaks or not peaks["flops"]:
        return None
    seconds = max(work.flops / peaks["flops"], work.weight_bytes / peaks["bandwidth"])
    return n_tokens / seconds


@contextlib.contextmanager
def first_blocks(model, n_blocks: int):
    """Within the block, `model.hf.model` holds only its first `n_blocks` blocks: a forward through it is the
    cost of stopping after block n_blocks - 1 without any hook (plus the final norm, one small op)."""
    base = model.hf.model
    full = base.layers
    base.layers = torch.nn.ModuleList(list(full)[:n_blocks])
    try:
        yield base
    finally:
        base.layers = full
