"""metalens.generate(fast=True) on CUDA (static cache, CUDA graphs): the hook path's tokens, steered or not.

float32 tiny models: the compiled and eager steps may round differently, but not enough to change a greedy
token of these models; bfloat16 identity is not promised (fused kernels round otherwise) and not tested.
"""
import pytest
import torch
from torch._dynamo.utils import counters

import metalens
from metalens.introspect.heads.bins import BinSpec
from metalens.introspect.heads.head import HeadReadout, ReservedHead
from metalens.steering import SteeringVector
from metalens.steering.generate import generate_ids
from metalens.testing import tiny_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
PROMPTS = ["hello", "a much longer prompt here", "x", "the sea"]
NEW = 8


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request):
    return tiny_model(request.param, seed=1, device="cuda", dtype=torch.float32)


def _vector(model, layers=(0, 2)) -> SteeringVector:
    gen = torch.Generator().manual_seed(5)
    return SteeringVector({k: torch.randn(model.d_model, generator=gen) for k in layers}, model.name, model.d_model,
                          revision=model.revision)


def _ids(model, fast, **kw):
    return metalens.generate(model, PROMPTS, max_new_tokens=NEW, fast=fast, **kw).ids


def test_fast_plain_and_steered_tokens_equal_the_hook_path_on_cuda(model):
    assert _ids(model, True) == _ids(model, False)
    vec = _vector(model)
    for prompt in (True, False):
        kw = dict(strength=3.0, prompt=prompt, max_new_tokens=NEW, chat=False)
        fast = generate_ids(model, PROMPTS, vec, fast=True, **kw)
        assert fast == generate_ids(model, PROMPTS, vec, **kw) != _ids(model, False)


def test_strength_changes_reach_the_cuda_graph_without_recompiling(model):
    vec = _vector(model, layers=(1,))
    generate_ids(model, PROMPTS, vec, strength=1.0, max_new_tokens=NEW, chat=False, fast=True)
    before = counters["stats"]["unique_graphs"]
    for strength in (2.0, 5.0):
        kw = dict(strength=strength, max_new_tokens=NEW, chat=False)
        assert generate_ids(model, PROMPTS, vec, fast=True, **kw) == generate_ids(model, PROMPTS, vec, **kw)
    assert counters["stats"]["unique_graphs"] == before


def test_head_readout_on_cuda_reads_the_hook_paths_distributions(model):
    head = ReservedHead.from_model(model, BinSpec(n_rewards=2, edges=(1, 2, 4, 8)))
    reads = {}
    for fast in (True, False):
        readout = HeadReadout(head)
        reads[fast] = (_ids(model, fast, logits_processors=[readout]), readout.stacked())
    assert reads[True][0] == reads[False][0]
    torch.testing.assert_close(reads[True][1], reads[False][1], rtol=1e-3, atol=1e-4)
