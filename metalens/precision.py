"""`in_float32`: run a block with the model's weights in float32, then give them back their own dtypes.

Per-head patching deltas are small differences of large logits; in bfloat16 (8 bits of mantissa)
they drown in rounding, so the circuits workflows compute in float32 also where a model was loaded
in half precision (e.g. on a GPU).
"""
from __future__ import annotations

import contextlib
from itertools import chain

import torch


@contextlib.contextmanager
def in_float32(model):
    """Inside the block every floating parameter and buffer of `model.hf` is float32; restored on exit."""
    tensors = [t for _, t in chain(model.hf.named_parameters(), model.hf.named_buffers()) if t.is_floating_point()]
    dtypes = [t.dtype for t in tensors]
    if all(d == torch.float32 for d in dtypes):
        yield model
        return
    for t in tensors:
        t.data = t.data.float()
    try:
        yield model
    finally:
        for t, d in zip(tensors, dtypes):
            t.data = t.data.to(d)
