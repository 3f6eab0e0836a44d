"""Steered generation: batching with left padding, prompt-only option, rule books, nnsight path."""
from __future__ import annotations

import pytest
import torch

import metalens
import metalens.steering
from metalens.steering import Rule, RuleBook, SteeringVector
from metalens.steering.generate import generate_ids, steering_sum


def _vec(model, layer, seed, scale=4.0):
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector({layer: torch.randn(model.d_model, generator=gen) * scale}, model.name, model.d_model,
                          revision=model.revision)


PROMPTS = ["abc", "hello there my friend", "xy"]


def test_batched_left_padded_generation_matches_one_prompt_at_a_time(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0)
    batched = metalens.steering.generate(tiny_gemma, PROMPTS, vec, max_new_tokens=6, strength=2.0)
    single = [metalens.steering.generate(tiny_gemma, [p], vec, max_new_tokens=6, strength=2.0)[0] for p in PROMPTS]
    assert batched == single


def test_hf_backend_is_core_generate_with_the_vector_as_an_edit(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0, scale=20.0)
    core = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=6, edits=vec.edits(tiny_gemma, strength=1.5))
    assert generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6, strength=1.5) == core.ids


def test_none_means_unsteered_and_steering_changes_tokens(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0, scale=20.0)
    plain = generate_ids(tiny_gemma, PROMPTS, None, max_new_tokens=6)
    hf = tiny_gemma.tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    ref = tiny_gemma.hf.generate(**hf, max_new_tokens=6, do_sample=False, pad_token_id=tiny_gemma.tokenizer.pad_token_id)
    eos = tiny_gemma.tokenizer.eos_token_id
    want = [row[: row.index(eos) + 1] if eos in row else row for row in ref[:, hf["input_ids"].shape[1]:].tolist()]
    assert plain == want
    assert plain != generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6)


def test_prompt_false_leaves_first_token_to_the_unsteered_prompt(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0, scale=20.0)
    plain = generate_ids(tiny_gemma, PROMPTS, None, max_new_tokens=4)
    late = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=4, prompt=False)
    full = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=4, prompt=True)
    assert [r[0] for r in late] == [r[0] for r in plain]  # the first token comes from the prompt's pass
    assert late != plain and [r[0] for r in full] != [r[0] for r in plain]


def test_prompt_false_spares_the_prompt_of_every_batch_not_only_the_first(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0, scale=20.0)
    together = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=4, prompt=False, batch_size=3)
    one_by_one = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=4, prompt=False, batch_size=1)
    assert one_by_one == together


def test_rulebook_applies_sum_of_active_rules_at_their_strengths(tiny_gemma):
    a, b = _vec(tiny_gemma, 1, 0), _vec(tiny_gemma, 1, 1)
    book = RuleBook()
    book.add(Rule("a", "rule a"), a, strength=2.0)
    book.add(Rule("b", "rule b", parent="a"), b, strength=0.5)
    total = steering_sum(tiny_gemma, book)
    torch.testing.assert_close(total[1], 2.0 * a.directions[1] + 0.5 * b.directions[1])
    book["b"].enabled = False
    torch.testing.assert_close(steering_sum(tiny_gemma, book)[1], 2.0 * a.directions[1])
    same = SteeringVector({1: 2.0 * a.directions[1]}, tiny_gemma.name, tiny_gemma.d_model)
    assert metalens.steering.generate(tiny_gemma, PROMPTS, book, max_new_tokens=5) == \
        metalens.steering.generate(tiny_gemma, PROMPTS, same, max_new_tokens=5)


def test_nnsight_generate_gives_same_greedy_tokens_as_hf(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0, scale=10.0)
    for prompt in (True, False):
        hf = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6, strength=1.5, prompt=prompt)
        nn = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6, strength=1.5, prompt=prompt, backend="nnsight")
        assert nn == hf
    assert metalens.steering.generate(tiny_gemma, PROMPTS, None, max_new_tokens=5, backend="nnsight") == \
        metalens.steering.generate(tiny_gemma, PROMPTS, None, max_new_tokens=5)


def test_masked_ids_are_never_generated_on_either_backend(tiny_gemma):
    plain = generate_ids(tiny_gemma, PROMPTS, None, max_new_tokens=4)
    banned = sorted({t for row in plain for t in row})
    for backend in ("hf", "nnsight"):
        rows = generate_ids(tiny_gemma, PROMPTS, None, max_new_tokens=4, mask_ids=banned, backend=backend)
        assert not {t for row in rows for t in row} & set(banned), backend


def test_seeded_sampling_is_reproducible(tiny_gemma):
    vec = _vec(tiny_gemma, 1, 0)
    a = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6, do_sample=True, seed=3)
    b = generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=6, do_sample=True, seed=3)
    assert a == b


def test_neither_backend_changes_the_shared_tokenizer(tiny_gemma):
    side = tiny_gemma.tokenizer.padding_side
    vec = _vec(tiny_gemma, 1, 0)
    for backend in ("hf", "nnsight"):
        generate_ids(tiny_gemma, PROMPTS, vec, max_new_tokens=2, backend=backend)
        assert tiny_gemma.tokenizer.padding_side == side, backend


def test_chat_models_get_the_chat_template(tiny_llama):
    vec = _vec(tiny_llama, 0, 0)
    out = metalens.steering.generate(tiny_llama, ["hi"], vec, max_new_tokens=3)
    assert isinstance(out[0], str)
    assert metalens.steering.generate(tiny_llama, ["hi"], None, max_new_tokens=3, chat=True) == \
        metalens.steering.generate(tiny_llama, ["<|user|>hi<eos><|assistant|>"], None, max_new_tokens=3, chat=False)


def test_bad_prompts_and_backends_are_refused(tiny_gemma):
    with pytest.raises(TypeError, match="not one string"):
        metalens.steering.generate(tiny_gemma, "hi", None)
    with pytest.raises(ValueError, match="No prompts"):
        metalens.steering.generate(tiny_gemma, [], None)
    with pytest.raises(TypeError, match="SteeringVector"):
        metalens.steering.generate(tiny_gemma, ["hi"], ["not a vector"])
    with pytest.raises(ValueError, match="backend must be one of"):
        metalens.steering.generate(tiny_gemma, ["hi"], None, backend="vllm")
