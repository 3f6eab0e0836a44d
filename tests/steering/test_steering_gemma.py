"""On the real gemma-3-270m: the shipped ocean vector makes the model talk about the ocean."""
from __future__ import annotations

import pytest

import metalens.steering
from metalens.steering.rules.library import heldout_prompts


@pytest.mark.integration
def test_ocean_vector_raises_ocean_talk_on_gemma(gemma):
    pos, neg, positions = metalens.steering.pairs_for_rule("ocean")
    vec = metalens.steering.train_steering_vector(gemma, pos, neg, layers=[6], positions=positions)
    prompts = heldout_prompts()[:6]
    checker = metalens.steering.checker_for(metalens.steering.library()["ocean"])
    plain = metalens.steering.generate(gemma, prompts, None, max_new_tokens=12)
    steered = metalens.steering.generate(gemma, prompts, vec, max_new_tokens=12, strength=2.0)
    assert sum(checker(steered)) >= sum(checker(plain)) + 2, (plain, steered)  # measured: 1 -> 3 of 6
    hf = metalens.steering.generate(gemma, prompts[:2], vec, max_new_tokens=6, strength=2.0)
    nn = metalens.steering.generate(gemma, prompts[:2], vec, max_new_tokens=6, strength=2.0, backend="nnsight")
    assert hf == nn
