"""On the real gemma-3-270m: the reserved block and bit-identical normal logits."""
import pytest
import torch

from metalens.introspect import ReservedHead
from metalens.introspect.rollouts.decode import sample

pytestmark = pytest.mark.integration


def test_gemma_head_uses_unused_tokens_and_keeps_greedy_generation(gemma):
    head = ReservedHead.from_model(gemma)
    names = gemma.tokenizer.convert_ids_to_tokens(list(head.token_ids))
    assert all(n.startswith("<unused") for n in names), names
    prompt = gemma.tokenizer("Q: What is 2 + 3?\nA:")["input_ids"]
    plain = sample(gemma, prompt, 1, max_new_tokens=6, temperature=0, head=head, stop_strings=())
    ids = torch.tensor([prompt], device=gemma.device)
    before = gemma.hf(input_ids=ids).logits
    torch.manual_seed(0)
    # rows large enough that, unmasked, a reserved token would win every step
    head.weight = torch.randn_like(head.weight) * 100
    with head.applied(gemma):
        after = gemma.hf(input_ids=ids).logits
        trained = sample(gemma, prompt, 1, max_new_tokens=6, temperature=0, head=head, stop_strings=())
    keep = torch.ones(gemma.d_vocab, dtype=torch.bool)
    keep[list(head.token_ids)] = False
    assert torch.equal(before[..., keep], after[..., keep])
    assert after[0, -1].argmax().item() in head.token_ids  # the mask is what keeps generation unchanged
    assert trained.tokens == plain.tokens
