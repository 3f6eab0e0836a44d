"""metalens.generate(fast=True): static cache + compiled decode step, steering inside the graph, same tokens.

Compiling is slow on a CPU (~20-30 s per model and batch shape), so every test here reuses one model, one
batch of prompts and one max_new_tokens: the graph is compiled once per model for the whole module.
"""
import pytest
import torch
from torch._dynamo.utils import counters

import metalens
from metalens import sites
from metalens.fastgen import SteerOffsets, compile_config, fast_steering
from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.head import HeadReadout, ReservedHead
from metalens.sae import SAE
from metalens.steering import FeatureSteer, SteeringVector
from metalens.steering.generate import generate_ids
from metalens.testing import tiny_model

PROMPTS = ["hello", "a much longer prompt here", "x"]
NEW = 5


@pytest.fixture(scope="module")
def llama():
    """Its own tiny llama: the offsets and the compiled graph stay with it, not with the shared fixtures."""
    return tiny_model("llama", seed=1)


@pytest.fixture(scope="module")
def gemma():
    return tiny_model("gemma3", seed=1)


def _vector(model, layers=(0, 2)) -> SteeringVector:
    gen = torch.Generator().manual_seed(5)
    return SteeringVector({k: torch.randn(model.d_model, generator=gen) for k in layers}, model.name, model.d_model,
                          revision=model.revision)


def _ids(model, fast, **kw):
    return metalens.generate(model, PROMPTS, max_new_tokens=NEW, fast=fast, **kw).ids


def _steered(model, vec, fast, **kw):
    return generate_ids(model, PROMPTS, vec, max_new_tokens=NEW, chat=False, fast=fast, **kw)


def _no_hooks_left(model) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.hf.modules())


def test_fast_greedy_tokens_equal_the_hook_path(llama):
    fast = metalens.generate(llama, PROMPTS, max_new_tokens=NEW, fast=True, mask_ids=[2])
    slow = metalens.generate(llama, PROMPTS, max_new_tokens=NEW, mask_ids=[2])
    assert fast.ids == slow.ids and fast.texts == slow.texts and fast.stopped == slow.stopped
    assert len(llama._offsets._steps) == 1  # decoded by metalens' compiled step...
    assert "_compiled_call" not in llama.hf.__dict__  # ...handed to transformers for the call only
    assert _no_hooks_left(llama)


@pytest.mark.parametrize("prompt", [True, False])
def test_fast_steering_at_two_layers_equals_hook_steering(llama, prompt):
    vec = _vector(llama)
    fast = _steered(llama, vec, True, strength=3.0, prompt=prompt)
    assert fast == _steered(llama, vec, False, strength=3.0, prompt=prompt)
    assert fast != _ids(llama, False)  # the vector changed the text
    assert _no_hooks_left(llama) and not llama._offsets.live.any()  # offsets back to zero after the call


def test_prompt_false_steers_generated_tokens_only(llama):
    vec = _vector(llama)
    late = _steered(llama, vec, True, strength=3.0, prompt=False)
    full = _steered(llama, vec, True, strength=3.0, prompt=True)
    plain = _ids(llama, True)
    assert late != full
    assert [row[0] for row in late] == [row[0] for row in plain]  # first token: from the unsteered prompt pass


def test_apply_fast_steers_a_fast_generate_inside_the_block(llama):
    vec = _vector(llama, layers=(1,))
    with vec.apply(llama, 4.0, fast=True):
        fast = _ids(llama, True)
    with vec.apply(llama, 4.0):
        slow = _ids(llama, False)
    assert fast == slow != _ids(llama, False)
    assert _no_hooks_left(llama) and not llama._offsets.live.any()


def test_changing_strength_or_layers_does_not_recompile(llama):
    _ids(llama, True)  # compiled (or already compiled) for this shape
    before = counters["stats"]["unique_graphs"]
    outs = [_steered(llama, _vector(llama, layers), True, strength=s) for layers, s in [((0,), 1.0), ((0,), 6.0),
                                                                                          ((1, 2), 2.0)]]
    assert counters["stats"]["unique_graphs"] == before
    assert len({str(o) for o in outs}) == 3  # each setting really reached the graph


def test_head_readout_reads_the_same_distributions(llama):
    head = ReservedHead.from_model(llama, BinSpec(n_rewards=2, edges=(1, 2, 4, 8)))
    reads = {}
    for fast in (True, False):
        readout = HeadReadout(head)
        reads[fast] = (_ids(llama, fast, logits_processors=[readout]), readout.stacked())
    assert reads[True][0] == reads[False][0]
    assert reads[True][1].shape == (len(PROMPTS), NEW, 8)
    torch.testing.assert_close(reads[True][1], reads[False][1], rtol=1e-4, atol=1e-5)


def test_seeded_sampling_gives_the_hook_paths_tokens(llama):
    kw = dict(do_sample=True, temperature=0.8, top_p=0.95, seed=11)
    assert _ids(llama, True, **kw) == _ids(llama, False, **kw)
    assert _ids(llama, True, **kw) != _ids(llama, True, **{**kw, "seed": 12})


def test_gemma_fast_steering_equals_hook_steering(gemma):
    vec = _vector(gemma)
    assert _ids(gemma, True) == _ids(gemma, False)
    assert _steered(gemma, vec, True, strength=3.0, prompt=False) == _steered(gemma, vec, False, strength=3.0,
                                                                              prompt=False)


def test_fast_refuses_python_edits_and_hooks_and_names_the_fix(tiny_llama):
    with pytest.raises(ValueError, match="cannot run `edits`.*fast=False"):
        metalens.generate(tiny_llama, PROMPTS, fast=True, edits={sites.resid_post(0): lambda x: x})
    vec = _vector(tiny_llama)
    with vec.apply(tiny_llama, 2.0), pytest.raises(ValueError, match=r"Python hooks on \['model.layers.0'.*fast=True"):
        metalens.generate(tiny_llama, PROMPTS, fast=True)
    with pytest.raises(ValueError, match="fast=False"):
        generate_ids(tiny_llama, PROMPTS, vec, fast=True, backend="nnsight")
    with pytest.raises(ValueError, match="blocks 0-2"):
        with fast_steering(tiny_llama, {7: torch.zeros(tiny_llama.d_model)}):
            pass
    assert _no_hooks_left(tiny_llama)


def test_feature_steer_is_refused_on_the_fast_path(tiny_llama):
    d = tiny_llama.d_model
    sae = SAE(W_enc=torch.randn(d, 8), W_dec=torch.randn(8, d), b_enc=torch.zeros(8), b_dec=torch.zeros(d),
              site=sites.resid_post(1))
    with pytest.raises(ValueError, match="FeatureSteer.*fast=False"):
        generate_ids(tiny_llama, PROMPTS, FeatureSteer(sae, 3, "add"), fast=True)


def test_offsets_are_detached_and_restored_even_when_the_block_fails(tiny_llama):
    vec = _vector(tiny_llama)
    with pytest.raises(RuntimeError, match="boom"):
        with vec.apply(tiny_llama, 2.0, fast=True):
            assert tiny_llama._offsets.live[0].abs().sum() > 0
            raise RuntimeError("boom")
    assert _no_hooks_left(tiny_llama) and not tiny_llama._offsets.live.any()
    assert not tiny_llama._offsets.prefill.any() and not tiny_llama._offsets.decode.any()


def test_offsets_are_detached_and_zeroed_when_a_fast_generate_fails(llama):
    def fail(input_ids, scores):
        raise RuntimeError("processor failed")

    with _vector(llama).apply(llama, 3.0, prompt=False, fast=True):
        with pytest.raises(RuntimeError, match="failed"):
            metalens.generate(llama, PROMPTS, max_new_tokens=NEW, fast=True, logits_processors=[fail])
        assert not llama._offsets.live.any()  # back at the prompt's offsets (none), not the generated tokens'
    assert _no_hooks_left(llama) and not llama._offsets.live.any()


def test_a_hook_less_compile_of_the_same_architecture_does_not_swallow_fast_steering(llama):
    # Dynamo would reuse transformers' own compiled `__call__` for any llama of this shape, hooks or not.
    # Runs last: it clears dynamo's caches so that the hook-less graph is the first one compiled.
    torch._dynamo.reset()
    other = tiny_model("llama", seed=3)
    batch = other.tokenize(PROMPTS, side="left", add_special_tokens=True)
    other.hf.generate(**batch, max_new_tokens=NEW, pad_token_id=other.tokenizer.pad_token_id,
                      cache_implementation="static", compile_config=compile_config("cpu"))
    fresh, vec = tiny_model("llama", seed=4), _vector(llama)
    fast = _steered(fresh, vec, True, strength=3.0, prompt=False)  # decode steps only: all in the compiled graph
    assert fast == _steered(fresh, vec, False, strength=3.0, prompt=False) != _ids(fresh, False)


def test_fast_generation_makes_fast_the_default_only_where_it_gives_the_same_tokens(llama, monkeypatch):
    runs = []
    real = SteerOffsets.generating
    monkeypatch.setattr(SteerOffsets, "generating", lambda self, *a: (runs.append(1), real(self, *a))[1])
    vec = _vector(llama)
    with metalens.fast_generation():
        plain = metalens.generate(llama, PROMPTS, max_new_tokens=NEW).ids
        steered = generate_ids(llama, PROMPTS, vec, max_new_tokens=NEW, chat=False, strength=3.0)
        assert len(runs) == 2  # both took the compiled path
        edited = metalens.generate(llama, PROMPTS, max_new_tokens=NEW, edits={sites.resid_post(0): lambda x: x}).ids
        with vec.apply(llama, 3.0):  # Python hooks on the model: the graph would leave them out
            hooked = metalens.generate(llama, PROMPTS, max_new_tokens=NEW).ids
        assert len(runs) == 2  # neither did, and neither was refused
        with metalens.fast_generation(False):
            metalens.generate(llama, PROMPTS, max_new_tokens=NEW)
    metalens.generate(llama, PROMPTS, max_new_tokens=NEW)
    assert len(runs) == 2  # off again inside fast_generation(False) and after the block
    assert plain == edited == _ids(llama, False)
    assert steered == hooked == _steered(llama, vec, False, strength=3.0) != plain
