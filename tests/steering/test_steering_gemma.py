"""On the real gemma-3-270m: the shipped ocean vector makes the model talk about the ocean."""
from __future__ import annotations

import pytest

import steering


@pytest.mark.integration
def test_ocean_vector_raises_ocean_talk_on_gemma(gemma):
    pos, neg, positions = steering.pairs_for_rule("ocean")
    vec = steering.train(gemma, pos, neg, layers=[6], positions=positions)
    prompts = steering.heldout_prompts()[:6]
    checker = steering.checker_for(steering.library()["ocean"])
    plain = steering.generate(gemma, prompts, None, max_new_tokens=12)
    steered = steering.generate(gemma, prompts, vec, max_new_tokens=12, strength=2.0)
    assert sum(checker(steered)) >= sum(checker(plain)) + 2, (plain, steered)  # measured: 1 -> 3 of 6
    hf = steering.generate(gemma, prompts[:2], vec, max_new_tokens=6, strength=2.0)
    nn = steering.generate(gemma, prompts[:2], vec, max_new_tokens=6, strength=2.0, backend="nnsight")
    assert hf == nn
