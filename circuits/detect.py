"""`detect_heads`: score every head for induction, previous-token or duplicate-token attention.

Scores come from attention patterns (`blocks.L.attn.hook_pattern`) on sequences of random
tokens repeated twice, the standard probe for induction heads (Olsson et al. 2022, "In-context
Learning and Induction Heads"). Every query head is scored on its own pattern, also when
query heads share a key/value head (gemma-3-270m: 4 query heads, 1 kv head per layer).
"""
from __future__ import annotations

import torch
from torch import Tensor

import metalens
from metalens.sites import attn_pattern

KINDS = ("induction", "previous_token", "duplicate_token")


def random_token_ids(model, n_seqs: int, seq_len: int, seed: int = 0) -> Tensor:
    """[n_seqs, 1 + 2*seq_len] ids: BOS, then seq_len random ordinary tokens, repeated."""
    tok = model.tokenizer
    gen = torch.Generator().manual_seed(seed)
    special = set(tok.all_special_ids)
    pool = torch.randperm(len(tok), generator=gen)[: max(4000, 4 * seq_len)].tolist()
    pool = [i for i in pool if i not in special and "unused" not in (tok.convert_ids_to_tokens(i) or "")
            and i < model.d_vocab]
    if len(pool) < seq_len:
        raise ValueError(f"Only {len(pool)} ordinary tokens to draw from; use a shorter seq_len.")
    pool_t = torch.tensor(pool)
    rows = [pool_t[torch.randperm(len(pool), generator=gen)[:seq_len]] for _ in range(n_seqs)]
    half = torch.stack(rows)
    bos = tok.bos_token_id if tok.bos_token_id is not None else half[:, :1]
    bos = torch.full((n_seqs, 1), bos) if isinstance(bos, int) else bos
    return torch.cat([bos, half, half], dim=1).to(model.device)


def score_patterns(pattern: Tensor, kind: str, seq_len: int) -> Tensor:
    """[head] mean attention on the kind's target key, for pattern [batch, head, q, k] of BOS + 2 copies.

    Queries are the second copy (positions 1+seq_len ...). For query t: induction attends to
    t - seq_len + 1 (the token after the earlier copy), duplicate_token to t - seq_len (the same
    token earlier), previous_token to t - 1.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown head kind '{kind}': use one of {KINDS}.")
    offset = {"induction": seq_len - 1, "duplicate_token": seq_len, "previous_token": 1}[kind]
    q = torch.arange(1 + seq_len, 1 + 2 * seq_len)
    k = q - offset
    return pattern[:, :, q, k].float().mean(dim=(0, 2))


def detect_heads(model, kind: str = "induction", n_seqs: int = 8, seq_len: int = 24, seed: int = 0) -> Tensor:
    """[n_layers, n_heads] scores in [0, 1]: mean attention each head puts where `kind` heads look."""
    if kind not in KINDS:
        raise ValueError(f"Unknown head kind '{kind}': use one of {KINDS}.")
    ids = random_token_ids(model, n_seqs, seq_len, seed)
    keep = [attn_pattern(layer) for layer in range(model.n_layers)]
    cache = metalens.run_with_cache(model, ids, sites=keep)  # patterns [batch, head, q, k]
    return torch.stack([score_patterns(cache[site], kind, seq_len).cpu() for site in keep])


def top_heads(scores: Tensor, k: int) -> list[tuple[int, int]]:
    """The k (layer, head) pairs with the highest scores, best first."""
    flat = scores.flatten().nan_to_num(float("-inf")).topk(k).indices
    return [(int(i) // scores.shape[1], int(i) % scores.shape[1]) for i in flat]
