"""`next_token_logprobs` and `Model.unembed`: the one option reader and the one slice unembedding."""
import pytest
import torch

import metalens
from metalens.sites import FINAL_NORM


def _full_logprobs(model, ids):
    logits = model.hf(torch.tensor([ids])).logits[0].float()  # [pos, vocab]
    return logits.log_softmax(-1)


def test_reads_equal_the_models_own_next_token_distribution(tiny_gemma):
    prompts = [[2, 5, 6, 7], [2, 9, 10]]
    reads = metalens.next_token_logprobs(tiny_gemma, prompts, [11, 12, 13], batch_size=2)
    for ids, lp in zip(prompts, reads.logprobs):
        want = _full_logprobs(tiny_gemma, ids)[-1, [11, 12, 13]]
        torch.testing.assert_close(lp[0], want, atol=1e-4, rtol=1e-4)


def test_positions_and_per_prompt_tokens(tiny_gemma):
    prompts = [[2, 5, 6, 7, 8], [2, 9, 10]]
    reads = metalens.next_token_logprobs(tiny_gemma, prompts, [[11, 12], [13, 14, 15]], positions=[[1, 3], [2]])
    assert reads.logprobs[0].shape == (2, 2) and reads.logprobs[1].shape == (1, 3)
    want = _full_logprobs(tiny_gemma, prompts[0])[[1, 3]][:, [11, 12]]
    torch.testing.assert_close(reads.logprobs[0], want, atol=1e-4, rtol=1e-4)


def test_batch_size_does_not_change_reads(tiny_gemma):
    prompts = [[2, 5, 6, 7, 8, 9], [2, 9], [2, 4, 4]]
    one = metalens.next_token_logprobs(tiny_gemma, prompts, [3, 4], batch_size=1).stacked()
    three = metalens.next_token_logprobs(tiny_gemma, prompts, [3, 4], batch_size=3).stacked()
    torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-5)


def test_sites_are_kept_at_read_positions(tiny_gemma):
    site = metalens.sites.resid_post(1)
    reads = metalens.next_token_logprobs(tiny_gemma, [[2, 5, 6]], [3], sites=[site])
    cache = metalens.run_with_cache(tiny_gemma, torch.tensor([[2, 5, 6]]), sites=[site])
    torch.testing.assert_close(reads.acts[site][0][0], cache[site][0, -1].float())


def test_bad_positions_are_refused(tiny_gemma):
    with pytest.raises(ValueError, match="outside"):
        metalens.next_token_logprobs(tiny_gemma, [[2, 5]], [3], positions=[[5]])


def test_unembed_rows_equal_the_full_logits_at_those_ids(tiny_gemma):
    hidden = metalens.run_with_cache(tiny_gemma, torch.tensor([[2, 5, 6]]), sites=[FINAL_NORM])[FINAL_NORM]
    full = tiny_gemma.unembed(hidden).float()  # [1, 3, vocab]
    for rows, ids in ((range(4, 9), list(range(4, 9))), ([7, 3], [7, 3]), (torch.tensor([1, 2]), [1, 2])):
        torch.testing.assert_close(tiny_gemma.unembed(hidden, rows), full[..., ids], atol=1e-4, rtol=1e-4)


def test_default_layers_are_inside_the_stack(tiny_gemma):
    assert tiny_gemma.default_layers() == [tiny_gemma.n_layers // 2]
    assert tiny_gemma.resolve_layers(None) == tiny_gemma.default_layers()
    assert tiny_gemma.resolve_layers(["all"]) == list(range(tiny_gemma.n_layers))
    assert tiny_gemma.resolve_layers([2, 0, 2]) == [2, 0]
    with pytest.raises(ValueError, match="out of range"):
        tiny_gemma.resolve_layers([tiny_gemma.n_layers])
