"""metalens.generate: the one batched generation function."""
import pytest
import torch

import metalens
from metalens import sites
from metalens.generate import MaskTokens


def _one_by_one(model, prompts, **kw):
    return [metalens.generate(model, [p], **kw).ids[0] for p in prompts]


PROMPTS = ["hello", "a much longer prompt here", "x"]


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_gemma):
    batched = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=6)
    assert batched.ids == _one_by_one(tiny_gemma, PROMPTS, max_new_tokens=6)
    assert len(batched.texts) == 3 and all(len(t) <= 6 for t in batched.ids)


def test_token_id_prompts_match_string_prompts(tiny_gemma):
    ids = [tiny_gemma.tokenizer(p)["input_ids"] for p in PROMPTS]
    assert metalens.generate(tiny_gemma, ids, max_new_tokens=5).ids == \
        metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=5).ids


def test_masked_tokens_are_never_generated(tiny_gemma):
    plain = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=4)
    banned = sorted({t for row in plain.ids for t in row})
    masked = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=4, mask_ids=banned, do_sample=True, seed=1)
    assert not {t for row in masked.ids for t in row} & set(banned)


def test_processors_see_logits_before_the_mask_and_temperature(tiny_gemma):
    seen = []

    def record(input_ids, scores):
        seen.append(scores.clone())
        return scores

    metalens.generate(tiny_gemma, ["ab"], max_new_tokens=1, logits_processors=[record], mask_ids=[5],
                      do_sample=True, temperature=0.5, seed=0)
    with torch.no_grad():
        expected = tiny_gemma.hf(**tiny_gemma.tokenize(["ab"])).logits[:, -1]
    torch.testing.assert_close(seen[0], expected)


def test_processors_chain_in_order_and_transformers_sees_one(tiny_gemma, monkeypatch):
    from transformers import LogitsProcessorList

    order, lists = [], []
    real = LogitsProcessorList.__call__

    def spy(self, input_ids, scores, **kwargs):
        lists.append(len(self))
        return real(self, input_ids, scores, **kwargs)

    def first(input_ids, scores):  # a plain function
        order.append("first")
        return scores + 1.0

    class Second(MaskTokens):  # a LogitsProcessor: sees the first one's scores
        def __call__(self, input_ids, scores):
            order.append("second")
            assert torch.equal(scores, seen[-1] + 1.0)
            return super().__call__(input_ids, scores)

    seen = []
    monkeypatch.setattr(LogitsProcessorList, "__call__", spy)
    metalens.generate(tiny_gemma, ["ab"], max_new_tokens=2, mask_ids=[5],
                      logits_processors=[lambda i, s: seen.append(s.clone()) or s, first, Second([6])])
    assert order == ["first", "second"] * 2 and lists == [1, 1]  # one chain a step, not one inspection each


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(tiny_gemma):
    state = torch.random.get_rng_state()
    a = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=6, do_sample=True, n=3, seed=7)
    b = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=6, do_sample=True, n=3, seed=7)
    assert a.ids == b.ids and len(a.ids) == 9
    assert torch.equal(state, torch.random.get_rng_state())


def test_stop_strings_end_a_row_and_are_cut_from_the_text(tiny_gemma):
    newline = tiny_gemma.tokenizer.convert_tokens_to_ids("\n")
    force = MaskTokens([i for i in range(len(tiny_gemma.tokenizer)) if i != newline])
    out = metalens.generate(tiny_gemma, ["ab", "c"], max_new_tokens=5, stop_strings=["\n"], logits_processors=[force])
    assert out.ids == [[newline], [newline]] and out.stopped == [True, True] and out.texts == ["", ""]


def test_edits_are_active_during_generation_and_removed_after(tiny_gemma):
    plain = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=5)
    pushed = metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=5,
                               edits={sites.resid_post(1): lambda x: x + 50 * torch.randn_like(x[:1, :1])})
    assert pushed.ids != plain.ids
    assert metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=5).ids == plain.ids


def test_chat_prompts_need_a_chat_template(tiny_gemma, tiny_llama):
    with pytest.raises(ValueError, match="no chat template"):
        metalens.generate(tiny_gemma, ["hi"], chat=True)
    assert len(metalens.generate(tiny_llama, ["hi"], chat=True, max_new_tokens=2).ids) == 1


def test_bad_arguments_name_the_fix(tiny_gemma):
    with pytest.raises(TypeError, match="wrap it as"):
        metalens.generate(tiny_gemma, "hi")
    with pytest.raises(ValueError, match="do_sample=False for greedy"):
        metalens.generate(tiny_gemma, ["hi"], do_sample=True, temperature=0)


def test_an_edits_factory_gives_each_batch_fresh_hooks(tiny_gemma):
    calls = []

    def factory():
        calls.append(1)
        return {sites.resid_post(0): lambda x: None}

    metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=2, batch_size=2, edits=factory)
    assert len(calls) == 2  # two batches of at most 2 prompts


def test_greedy_generation_passes_no_sampling_flags(tiny_gemma, monkeypatch):
    # transformers warns "generation flags are not valid" for sampling flags in greedy mode
    seen = []
    real = tiny_gemma.hf.generate
    monkeypatch.setattr(tiny_gemma.hf, "generate", lambda **kw: seen.append(kw) or real(**kw))
    metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=2)
    metalens.generate(tiny_gemma, PROMPTS, max_new_tokens=2, do_sample=True, seed=0)
    assert not {"top_k", "top_p", "temperature", "min_p"} & set(seen[0])
    assert seen[1]["top_k"] == 0  # sampling: the model's own top_k default is switched off


def test_greedy_with_several_samples_repeats_each_prompt(tiny_gemma):
    out = metalens.generate(tiny_gemma, PROMPTS[:2], max_new_tokens=3, n=2)
    one = metalens.generate(tiny_gemma, PROMPTS[:2], max_new_tokens=3)
    assert out.ids == [one.ids[0], one.ids[0], one.ids[1], one.ids[1]]
