"""Fluency: the loss steered text has under the unsteered model (what steering costs in surprise)."""
from __future__ import annotations

import numpy as np
import torch

from metalens.steering.generate import format_prompts


@torch.inference_mode()
def token_loss(model, prompts: list[str], completions: list[str], batch_size: int = 8, chat: bool | None = None) -> np.ndarray:
    """Mean per-token loss (nats) of each completion given its prompt, under the unsteered model.

    NaN for an empty completion. Rows are left-padded so each completion ends the row and
    only its logits are computed (the vocabulary can be 262k wide).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions: pass one completion per prompt.")
    tok = model.tokenizer
    texts = format_prompts(model, prompts, chat)
    losses = np.full(len(texts), np.nan)
    for start in range(0, len(texts), batch_size):
        rows, n_new = [], []
        for text, completion in zip(texts[start:start + batch_size], completions[start:start + batch_size]):
            c_ids = tok(completion, add_special_tokens=False)["input_ids"]
            rows.append(tok(text)["input_ids"] + c_ids)
            n_new.append(len(c_ids))
        keep = max(n_new)
        if keep == 0:
            continue
        ids, mask = model.pad(rows, side="left")  # [b, pos]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model.hf(input_ids=ids, attention_mask=mask, position_ids=positions,
                          logits_to_keep=keep + 1, use_cache=False).logits.float()  # [b, keep+1, vocab]
        logp = logits[:, :-1].log_softmax(-1)  # predicts the last `keep` tokens
        nll = -logp.gather(-1, ids[:, -keep:, None])[..., 0]  # [b, keep]
        for i, n in enumerate(n_new):
            if n:
                losses[start + i] = nll[i, keep - n:].mean().item()
    return losses
