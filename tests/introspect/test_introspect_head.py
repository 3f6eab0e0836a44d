"""Bins, labels, the reserved head, masking and `head`-mode training (tiny models)."""
import pytest
import torch

from metalens.introspect import BinSpec, Question, ReservedHead, rollout_positions, train_head
from metalens.introspect.heads.bins import prefix_labels
from metalens.introspect.rollouts.decode import sample
from metalens.introspect.heads.head import ReservedMask, reserved_block


def test_prefix_labels_match_a_hand_made_rollout():
    spec = BinSpec(edges=(1, 2, 4))  # L=3: {1}, {2,3}, {4+}
    labels = prefix_labels(5, reward=1, spec=spec)  # 5 tokens, the last one is the stop token
    assert labels["remaining"].tolist() == [5, 4, 3, 2, 1]
    assert labels["reward"].tolist() == [1] * 5
    # length bins 2,2,1,1,0 shifted by reward*L = 3
    assert labels["bin"].tolist() == [5, 5, 4, 4, 3]
    wrong = prefix_labels(3, reward=0, spec=spec)
    assert wrong["bin"].tolist() == [1, 1, 0]


def test_joint_bin_rejects_zero_remaining_and_bad_reward():
    spec = BinSpec()
    with pytest.raises(ValueError, match=">= 1"):
        spec.joint_bin(1, 0)
    with pytest.raises(ValueError, match="reward states"):
        spec.joint_bin(2, 3)


def test_marginals_and_expected_remaining_of_a_point_mass():
    spec = BinSpec(edges=(1, 2, 4))
    probs = torch.zeros(6)
    probs[spec.joint_bin(1, 1)] = 1.0
    assert spec.p_correct(probs).item() == 1.0
    assert spec.expected_remaining(probs).item() == pytest.approx(1.0)


def test_reserved_block_uses_contiguous_unused_tokens(tiny_gemma):
    start, note = reserved_block(tiny_gemma, 16)
    names = tiny_gemma.tokenizer.convert_ids_to_tokens(list(range(start, start + 16)))
    assert all(n.startswith("<unused") for n in names), names
    assert "unused" in note[0]


def test_head_bins_sum_to_one(tiny_gemma):
    head = ReservedHead.from_model(tiny_gemma)
    logits = tiny_gemma.hf(**tiny_gemma.tokenize(["Q: 1 + 2?"])).logits
    probs = head.probs(logits)
    assert probs.shape[-1] == head.spec.n_bins == 16
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_mask_sets_only_reserved_logits_to_minus_inf(tiny_gemma):
    head = ReservedHead.from_model(tiny_gemma)
    scores = torch.randn(2, tiny_gemma.d_vocab)
    masked = ReservedMask(head)(None, scores)
    ids = list(head.token_ids)
    assert torch.isinf(masked[:, ids]).all()
    keep = torch.ones(tiny_gemma.d_vocab, dtype=torch.bool)
    keep[ids] = False
    assert torch.equal(masked[:, keep], scores[:, keep])


def _toy_rollouts(model, n_tasks=6, n_samples=3):
    """Random-model rollouts with rewards planted from the prompt (so the head can learn them)."""
    records = []
    for i in range(n_tasks):
        task = Question(f"Q: {i} + {i}?\nA:" if i % 2 else f"Q: {i} * {i}?\nA:", 2 * i)
        prompt_ids = model.tokenizer(task.prompt)["input_ids"]
        s = sample(model, prompt_ids, n_samples, max_new_tokens=6, seed=i)
        records.append({"task_index": i, "prompt": task.prompt, "answer": task.answer, "level": 1,
                        "prompt_ids": prompt_ids, "completions": s.tokens, "texts": [""] * n_samples,
                        "truncated": s.truncated, "rewards": [i % 2] * n_samples})
    return records


def test_head_training_leaves_normal_logits_bit_identical_and_learns(tiny_gemma):
    model = tiny_gemma
    spec = BinSpec(edges=(1, 2, 4, 8))
    records = _toy_rollouts(model)
    positions = rollout_positions(model, records, spec)
    batch = model.tokenize(["Q: 3 + 3?\nA: 6", "Q: 2 * 2?\nA:"])
    before = model.hf(**batch).logits
    head = train_head(model, positions, spec, steps=200)
    with head.applied(model):
        after = model.hf(**batch).logits
        # the head read from the model's own logits is the one trained on cached hidden states
        probs = head.probs(model.hf(input_ids=torch.tensor([records[1]["prompt_ids"]])).logits[0, -1])
    keep = torch.ones(model.d_vocab, dtype=torch.bool)
    keep[list(head.token_ids)] = False
    assert torch.equal(before[..., keep], after[..., keep])
    assert not torch.equal(before[..., ~keep], after[..., ~keep])
    torch.testing.assert_close(probs, head.probs_from_hidden(model, positions.hidden[positions.sample == 3][0]))
    # planted rewards (odd tasks correct) are learnt on the training positions
    p = spec.p_correct(head.probs_from_hidden(model, positions.hidden))
    assert p[positions.reward == 1].mean() > p[positions.reward == 0].mean() + 0.3
    # applied() restored the original rows
    assert torch.equal(model.hf(**batch).logits, before)


def test_greedy_generation_is_identical_before_and_after_training(tiny_gemma):
    model = tiny_gemma
    spec = BinSpec(edges=(1, 2, 4, 8))
    positions = rollout_positions(model, _toy_rollouts(model), spec)
    head = train_head(model, positions, spec, steps=100)
    # make the reserved logits dominate: unmasked, greedy would pick a reserved token
    head.weight = head.weight * 50 + model.hf.get_output_embeddings().weight[10:11].detach() * 1000
    prompt = model.tokenizer("Q: 5 + 4?\nA:")["input_ids"]
    plain = sample(model, prompt, 1, max_new_tokens=12, temperature=0, head=ReservedHead.from_model(model, spec),
                   stop_strings=())
    with head.applied(model):
        trained = sample(model, prompt, 1, max_new_tokens=12, temperature=0, head=head, stop_strings=())
        unmasked = model.hf.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False)
        from transformers import LogitsProcessorList
        masked_hf = model.hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                      logits_processor=LogitsProcessorList([ReservedMask(head)]))
    assert trained.tokens == plain.tokens
    assert masked_hf[0, len(prompt):].tolist()[: len(plain.tokens[0])] == plain.tokens[0]
    assert set(unmasked[0, len(prompt):].tolist()) & set(head.token_ids), "the test must be able to fail"
    assert len(trained.head_probs[0]) == len(trained.tokens[0])


def test_head_save_load_roundtrip(tiny_gemma, tmp_path):
    head = ReservedHead.from_model(tiny_gemma)
    loaded = ReservedHead.load(head.save(tmp_path / "h"))
    assert loaded.start == head.start and torch.equal(loaded.weight, head.weight)
    assert loaded.spec == head.spec and loaded.metadata["model"] == "tiny-gemma3"


def test_head_read_from_hidden_states_matches_the_softcapped_logits():
    from metalens.introspect.heads.features import final_states
    from metalens.testing import tiny_model

    model = tiny_model("gemma3", seed=5)  # its own copy: the softcap is set on its config
    model.hf.config.final_logit_softcapping = 0.5  # small, so capping changes the head's distribution
    head = ReservedHead.from_model(model, BinSpec(edges=(1, 2, 4)))
    head.weight = torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(0)) * 3
    ids, mask = model.pad([model.tokenizer("Q: 1 + 2?")["input_ids"]])
    with head.applied(model):
        from_logits = head.probs(model.hf(input_ids=ids, attention_mask=mask).logits)
        from_hidden = head.probs_from_hidden(model, final_states(model, ids, mask))
    torch.testing.assert_close(from_hidden, from_logits, atol=1e-5, rtol=1e-4)
    uncapped = (final_states(model, ids, mask).float() @ head.weight.T).softmax(-1)
    assert not torch.allclose(uncapped, from_logits, atol=1e-3), "the test must be able to fail"


def test_final_states_keep_the_graph_only_when_gradients_are_on(tiny_gemma):
    from metalens.introspect.heads.features import final_states

    ids, mask = tiny_gemma.pad([[2, 40, 41, 42], [2, 43]])
    with torch.no_grad():
        frozen = final_states(tiny_gemma, ids, mask)
    assert not frozen.requires_grad
    torch.testing.assert_close(tiny_gemma.final_logits(frozen), tiny_gemma.hf(input_ids=ids, attention_mask=mask).logits)
    embed = tiny_gemma.hf.get_input_embeddings().weight
    try:
        final_states(tiny_gemma, ids, mask)[0, -1].sum().backward()
        assert embed.grad is not None and embed.grad.abs().sum() > 0
    finally:
        tiny_gemma.hf.zero_grad(set_to_none=True)


def test_sample_reads_the_head_at_every_token_of_every_sample_and_replays_with_its_seed(tiny_gemma):
    model = tiny_gemma
    head = ReservedHead.from_model(model, BinSpec(edges=(1, 2, 4)))
    head.weight = torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(1))
    prompt = model.tokenizer("Q: 7 + 1?\nA:")["input_ids"]
    stops = list("aeiou0123456789 ")  # common characters: samples end at different steps
    with head.applied(model):
        first = sample(model, prompt, 4, max_new_tokens=10, head=head, stop_strings=stops, seed=3)
        again = sample(model, prompt, 4, max_new_tokens=10, head=head, stop_strings=stops, seed=3)
        assert first.tokens == again.tokens
        assert len({len(t) for t in first.tokens}) > 1, "samples should end at different steps"
        for tokens, probs in zip(first.tokens, first.head_probs):
            assert not set(tokens) & set(head.token_ids)  # the reserved ids are never sampled
            # the reading at step t is the head on the logits that predicted token t
            logits = model.hf(input_ids=torch.tensor([prompt + tokens[:-1]])).logits[0, len(prompt) - 1:]
            torch.testing.assert_close(probs, head.probs(logits), atol=1e-5, rtol=1e-4)
    assert first.truncated == [len(t) == 10 and not any(s in model.tokenizer.decode(t[-1:]) for s in stops)
                               for t in first.tokens]


def test_greedy_sample_of_several_rows_gives_identical_rows(tiny_gemma):
    prompt = tiny_gemma.tokenizer("Q: 2 + 2?\nA:")["input_ids"]
    out = sample(tiny_gemma, prompt, 3, max_new_tokens=5, temperature=0, stop_strings=())
    assert len(out.tokens) == 3 and out.tokens[0] == out.tokens[1] == out.tokens[2]
    assert out.head_probs is None
