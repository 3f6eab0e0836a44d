"""The live adaptive sampler against the replay of the same policy, on a tiny model."""
import pytest
import torch

from metalens.tasks.arithmetic import extract_answer
from metalens.introspect import BinSpec, ReservedHead
from metalens.introspect.rollouts.decode import sample
from metalens.introspect.sampling.live import adaptive_generate
from metalens.introspect.sampling.policy import decide
from metalens.introspect.sampling.sampler import PoolSample, adaptive


def _head(model, seed=0):
    head = ReservedHead.from_model(model, BinSpec(edges=(1, 2, 4, 8)))
    head.weight = torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.3
    return head


def test_decide_prunes_the_hopeless_and_starts_while_worth_it():
    pruned, n_new = decide({0: (0.01, 20.0), 1: (0.9, 2.0)}, [], (0.5, 10.0), alpha=0.01, can_start=3)
    assert pruned == [0]  # 0.01 * 0.1 < 0.2 tokens' worth; sample 1 is kept
    assert n_new == 0  # with 0.9 already likely, one more at 0.5 adds 0.05 < 0.1
    assert decide({}, [], (0.5, 10.0), alpha=0.001, can_start=3)[1] == 3  # capped by can_start
    assert decide({}, [0.99], (0.5, 10.0), alpha=0.001, can_start=3)[1] == 0  # a finished sure answer


# (alpha, initial, head seed): all run to the end, starts capped by cost, a start later pruned, all pruned
@pytest.mark.parametrize("alpha,initial,seed", [(0.0, 1, 0), (0.03, 1, 0), (0.01, 2, 0), (0.015, 1, 2), (1.0, 2, 0)])
def test_live_sampler_spends_what_the_replayed_policy_spends(tiny_gemma, alpha, initial, seed):
    model, head = tiny_gemma, _head(tiny_gemma, seed)
    prompt = model.tokenizer("Q: 3 + 4?\nA:")["input_ids"]
    with head.applied(model):  # greedy: every sample is this one, so the replay pool is known
        trace = sample(model, prompt, 1, max_new_tokens=10, temperature=0, head=head)
    probs = trace.head_probs[0]
    text = model.tokenizer.decode(trace.tokens[0], skip_special_tokens=True)
    one = PoolSample(extract_answer(text), 0, head.spec.p_correct(probs).numpy(),
                     head.spec.expected_remaining(probs).numpy())
    replay = adaptive([one] * 5, alpha, every=3, initial=initial)
    live = adaptive_generate(model, head, prompt, alpha, every=3, initial=initial, max_samples=5,
                             max_new_tokens=10, temperature=0)
    assert (live.tokens, live.steps) == replay[1:]
    assert all(live.texts[i] == text for i in live.finished)
    if alpha == 0.0:  # free tokens: every sample runs to the end
        assert live.finished == list(range(5)) and live.tokens == 5 * len(trace.tokens[0])
    if seed == 2:  # the second sample starts at step 3 and is pruned while the first finishes
        assert live.finished == [0] and live.pruned == [1]
    if alpha == 1.0:  # dear tokens: everything is pruned at the first checkpoint
        assert live.finished == [] and live.answer is None and live.tokens == 3 * initial


def test_live_sampler_leaves_the_model_unchanged(tiny_gemma):
    model, head = tiny_gemma, _head(tiny_gemma, seed=1)
    batch = model.tokenize(["Q: 1 + 1?"])
    before = model.hf(**batch).logits
    adaptive_generate(model, head, model.tokenizer("Q: 2 + 2?\nA:")["input_ids"], alpha=0.001, max_samples=3,
                      max_new_tokens=6, seed=0)
    assert torch.equal(model.hf(**batch).logits, before)
    with pytest.raises(ValueError, match="initial"):
        adaptive_generate(model, head, [1, 2], alpha=0.0, initial=4, max_samples=2)


def test_live_sampler_uses_the_supported_cache_argument(tiny_gemma):
    import warnings

    head = _head(tiny_gemma, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers: `past_key_values` is removed in 5.40
        run = adaptive_generate(tiny_gemma, head, tiny_gemma.tokenizer("Q: 2 + 2?\nA:")["input_ids"], alpha=0.0,
                                max_samples=2, max_new_tokens=4, seed=0)
    assert run.tokens > 0
    again = adaptive_generate(tiny_gemma, head, tiny_gemma.tokenizer("Q: 2 + 2?\nA:")["input_ids"], alpha=0.0,
                              max_samples=2, max_new_tokens=4, seed=0)
    assert again.texts == run.texts  # the seed replays the draws


def test_the_one_sampling_step_is_greedy_at_zero_and_keeps_min_p_tokens_only():
    from metalens.introspect.sampling import draw

    scores = torch.tensor([[1.0, 3.0, 2.9, -5.0]] * 512)
    assert draw(scores, temperature=0).tolist() == [1] * 512
    gen = torch.Generator().manual_seed(0)
    kept = set(draw(scores, temperature=1.0, min_p=0.5, generator=gen).tolist())
    assert kept == {1, 2}  # 0 and 3 are below half the top probability
    loose = set(draw(scores, temperature=1.0, generator=torch.Generator().manual_seed(0)).tolist())
    assert 0 in loose, "the test must be able to fail"
