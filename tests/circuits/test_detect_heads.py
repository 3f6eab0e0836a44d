"""Head detectors score planted attention patterns correctly."""
import pytest
import torch

import metalens
from metalens import sites
from metalens.circuits import detect_heads
from metalens.circuits.detect import random_token_ids, score_patterns, top_heads

SEQ = 6


def _planted(kind_offset: int, n_q: int = 1 + 2 * SEQ) -> torch.Tensor:
    """[1, 2 heads, q, k]: head 0 attends to q - offset (where possible), head 1 uniformly."""
    pattern = torch.zeros(1, 2, n_q, n_q)
    for q in range(n_q):
        pattern[0, 0, q, max(q - kind_offset, 0)] = 1
        pattern[0, 1, q, : q + 1] = 1 / (q + 1)
    return pattern


@pytest.mark.parametrize("kind,offset", [("induction", SEQ - 1), ("duplicate_token", SEQ), ("previous_token", 1)])
def test_score_patterns_gives_one_to_the_planted_head(kind, offset):
    scores = score_patterns(_planted(offset), kind, SEQ)
    assert scores[0] == pytest.approx(1.0) and scores[1] < 0.3


def test_induction_score_does_not_reward_previous_token_heads():
    assert score_patterns(_planted(1), "induction", SEQ)[0] == 0


def test_detect_heads_finds_a_head_whose_pattern_was_made_previous_token(tiny_gemma):
    def plant(pattern):  # head 2 of block 1 now attends to the previous token only
        b, h, q, k = pattern.shape
        new = pattern.clone()
        new[:, 2] = torch.diag_embed(torch.ones(b, q - 1), offset=-1)
        new[:, 2, 0, 0] = 1
        return new

    with metalens.hooks(tiny_gemma, {sites.attn_pattern(1): plant}):
        scores = detect_heads(tiny_gemma, "previous_token", n_seqs=2, seq_len=8)
    assert scores.shape == (3, 4)
    assert top_heads(scores, 1) == [(1, 2)] and scores[1, 2] > 0.99


def test_random_token_sequences_repeat_and_avoid_special_tokens(tiny_gemma):
    ids = random_token_ids(tiny_gemma, 3, 10)
    assert ids.shape == (3, 21)
    assert torch.equal(ids[:, 1:11], ids[:, 11:])
    specials = set(tiny_gemma.tokenizer.all_special_ids)
    assert not specials & set(ids[:, 1:].flatten().tolist())


def test_unknown_kind_is_rejected(tiny_gemma):
    with pytest.raises(ValueError, match="induction"):
        detect_heads(tiny_gemma, "name_mover")
