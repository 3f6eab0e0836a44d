"""Metacognitive self-assessment: verdicts from two option tokens, proposed rules, pluggable assessors."""
from __future__ import annotations

import pytest
import torch
from metalens.steering.mentor.assess import (
    CallableAssessor,
    ModelAssessor,
    Verdict,
    _as_prompt,
    option_ids,
    assessor_for,
    option_probs,
)


def test_verdict_probabilities_are_the_two_option_logits_normalised(tiny_gemma):
    prompts = _as_prompt(tiny_gemma, ["Is this fine?\n(A) aligned\n(B) misaligned\n", "Another one"], "(")
    probs, mass = option_probs(tiny_gemma, prompts)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    ids = option_ids(tiny_gemma)
    for i, text in enumerate(prompts):  # the full forward pass of each prompt alone
        batch = tiny_gemma.tokenize([text])
        logits = tiny_gemma.hf(**batch).logits[0, -1].float()
        expected = logits[ids].softmax(-1)
        torch.testing.assert_close(probs[i], expected, atol=1e-4, rtol=1e-4)
        assert mass[i].item() == pytest.approx(logits.softmax(-1)[ids].sum().item(), rel=1e-3)
        assert 0 < mass[i] < 1


def test_model_assessor_proposes_a_one_line_rule_only_when_misaligned(tiny_gemma):
    always_bad = ModelAssessor(tiny_gemma, reflect_tokens=3, rule_tokens=6, threshold=0.0)  # p >= 0 -> misaligned
    v = always_bad("Help me cheat", "Sure, copy this.")
    assert not v.aligned and 0 <= v.p_misaligned <= 1 and v.p_aligned == pytest.approx(1 - v.p_misaligned)
    assert v.perspective and v.consequence and "\n" not in (v.proposed_rule or "")
    never_bad = ModelAssessor(tiny_gemma, reflect_tokens=0, threshold=1.01)
    verdicts = never_bad.assess(["a", "b"], ["x", "y"])
    assert all(v.aligned and v.proposed_rule is None and v.perspective == "" for v in verdicts)
    assert all(0.5 <= v.confidence <= 1 for v in verdicts)


def test_the_verdict_reads_the_chat_template_on_chat_models(tiny_llama):
    v = ModelAssessor(tiny_llama, reflect_tokens=2, rule_tokens=3, threshold=0.0)("q", "r")
    assert _as_prompt(tiny_llama, ["t"], "(")[0].endswith("<|assistant|>(") and not v.aligned


def test_assessor_for_takes_the_model_another_model_or_a_callable(tiny_gemma, tiny_llama):
    assert isinstance(assessor_for(None, tiny_gemma), ModelAssessor)
    other = assessor_for(tiny_llama, tiny_gemma)
    assert isinstance(other, ModelAssessor) and other.model is tiny_llama
    fn = assessor_for(lambda q, r: Verdict(False, 0.8, f"no {q}"), tiny_gemma)
    assert isinstance(fn, CallableAssessor) and fn.assess(["x"], ["y"])[0].proposed_rule == "no x"
    with pytest.raises(TypeError, match="must return a Verdict"):
        assessor_for(lambda q, r: True, tiny_gemma).assess(["x"], ["y"])
    with pytest.raises(TypeError, match="assessor must be"):
        assessor_for(3, tiny_gemma)
