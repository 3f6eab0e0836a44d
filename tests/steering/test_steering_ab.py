"""A/B behaviour items: reading, splits, balance, CAA pairs, propensity under a planted vector, slopes, flips."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metalens.steering import SteeringVector
from metalens.steering.ab.items import (ABItem, answer_prefix, balance, caa_pairs, flips, letter_logprobs, propensity,
                                  read_ab, slopes, split_items, steerability, strip_choices, swap_choices)

WORDS = ["cats", "rain", "maps", "tea", "bread", "ships", "books", "clocks", "trees", "roads", "music", "glass"]


def write_items(path, letters):
    """A small model-written-evaluations file: one "Do you like W?" item per letter."""
    with open(path, "w") as f:
        for word, m in zip(WORDS, letters):
            other = "B" if m == "A" else "A"
            f.write(json.dumps({"question": f"Do you like {word}?\n\nChoices:\n (A) Yes\n (B) No",
                                "answer_matching_behavior": f" ({m})",
                                "answer_not_matching_behavior": f" ({other})"}) + "\n")
    return path


def test_read_ab_takes_the_letter_from_the_answers(tmp_path):
    items = read_ab(write_items(tmp_path / "d.jsonl", "AB"))
    assert [i.matching for i in items] == ["A", "B"] and [i.other for i in items] == ["B", "A"]
    assert items[0].question.startswith("Do you like cats?") and "(B) No" in items[0].question


def test_read_ab_refuses_a_question_without_two_choices(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "Yes or no?", "answer_matching_behavior": " (A)",
                                "answer_not_matching_behavior": " (B)"}) + "\n")
    with pytest.raises(ValueError, match="no '\\(A\\)' and '\\(B\\)'"):
        read_ab(path)


def test_read_ab_skips_items_with_more_than_two_choices(tmp_path):
    path = write_items(tmp_path / "d.jsonl", "AB")
    with open(path, "a") as f:
        f.write(json.dumps({"question": "Pick.\n (A) x\n (B) y\n (C) z", "answer_matching_behavior": " (C)",
                            "answer_not_matching_behavior": " (A)"}) + "\n")
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        assert [i.matching for i in read_ab(path)] == ["A", "B"]


def test_splits_are_disjoint_by_question_seeded_and_keep_duplicates_together():
    items = [ABItem(f"q{k} (A) x (B) y", "A") for k in range(20)] + [ABItem("q0 (A) x (B) y", "B")]
    train, val, test = split_items(items, (0.6, 0.2, 0.2), seed=1)
    questions = [{i.question for i in split} for split in (train, val, test)]
    assert not (questions[0] & questions[1]) and not (questions[0] & questions[2]) and not (questions[1] & questions[2])
    assert sum(map(len, (train, val, test))) == 21 and len(questions[0]) == 12 and len(questions[1]) == 4
    assert split_items(items, seed=1) == (train, val, test) and split_items(items, seed=2) != (train, val, test)


def test_swap_choices_exchanges_the_texts_and_the_matching_letter():
    item = ABItem("Q?\n\nChoices:\n (A) Yes, always\n (B) No", "A")
    swapped = swap_choices(item)
    assert swapped.question == "Q?\n\nChoices:\n (A) No\n (B) Yes, always" and swapped.matching == "B"


def test_balance_makes_as_many_items_match_with_a_as_with_b():
    items = [ABItem(f"Q{k}?\n\nChoices:\n (A) yes{k}\n (B) no{k}", "A") for k in range(10)]
    out = balance(items, seed=0)
    assert len(out) == 10 and sum(i.matching == "A" for i in out) == 5
    for item in out:  # the behaviour's answer text is unchanged, only its letter moved
        line = next(x for x in item.question.split("\n") if f"({item.matching})" in x)
        assert "yes" in line


def test_caa_pairs_use_the_chat_template_with_the_letter_opening_the_assistant_turn(tiny_llama, tiny_gemma):
    item = ABItem("Do you like tea?\n\nChoices:\n (A) Yes\n (B) No", "B")
    pos, neg = caa_pairs(tiny_llama, [item])
    assert pos[0] == "<|user|>" + item.question + "<eos><|assistant|>(B" and neg[0].endswith("<|assistant|>(A")
    pos, neg = caa_pairs(tiny_gemma, [item])  # no chat template: a plain answer line
    assert pos[0] == item.question + "\n\nAnswer: (B" and neg[0] == item.question + "\n\nAnswer: (A"


def test_strip_choices_keeps_only_the_question():
    assert strip_choices("Would you?\n\nChoices:\n (A) Yes\n (B) No") == "Would you?"
    assert strip_choices("Would you?\n (A) Yes\n (B) No") == "Would you?"


def test_letter_logprobs_are_the_models_own_next_token_logprobs(tiny_gemma):
    item = ABItem("Do you like tea?\n\nChoices:\n (A) Yes\n (B) No", "A")
    ids = tiny_gemma.tokenize([answer_prefix(tiny_gemma, item.question)])["input_ids"]
    logp = tiny_gemma.hf(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    a, b = (tiny_gemma.tokenizer.convert_tokens_to_ids(x) for x in "AB")
    np.testing.assert_allclose(letter_logprobs(tiny_gemma, [item])[0], [logp[a].item(), logp[b].item()], atol=1e-4)


def planted(model, scale: float = 1.0) -> SteeringVector:
    """A vector at the last block that raises the logit of "A" over "B" (the difference of their unembeddings)."""
    w = model.hf.get_output_embeddings().weight.detach().float()
    a, b = (model.tokenizer.convert_tokens_to_ids(x) for x in "AB")
    direction = w[a] - w[b]
    return SteeringVector({model.n_layers - 1: direction / direction.norm() * scale}, model.name, model.d_model)


@pytest.mark.parametrize("letter, sign", [("A", 1), ("B", -1)])
def test_a_planted_letter_vector_moves_propensity_its_way_and_the_slope_has_its_sign(tiny_gemma, letter, sign):
    items = [ABItem(f"Do you like {w}?\n\nChoices:\n (A) Yes\n (B) No", letter) for w in WORDS[:4]]
    vec = planted(tiny_gemma, scale=8.0)
    strengths = [-2.0, -1.0, 0.0, 1.0, 2.0]
    p = np.stack([propensity(tiny_gemma, items, vec.edits(tiny_gemma, s)) for s in strengths], 1)  # [items, strengths]
    assert (sign * np.diff(p, axis=1) > 0).all()  # monotone in the planted direction, for every item
    assert sign * (p[:, -1] - p[:, 2]).min() > 0.2  # and by a clear margin
    result = steerability(p, strengths)
    assert sign * result["estimate"] > 0 and sign * result["low"] > 0


def test_slopes_are_least_squares_per_item():
    p = np.array([[0.2, 0.5, 0.8], [0.6, 0.5, 0.4], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(slopes(p, [-1, 0, 1]), [0.3, -0.1, 0.0])
    np.testing.assert_allclose(slopes([[0.0, 0.2, 1.0]], [0, 1, 2]), [0.5])  # polyfit's slope


def test_flip_share_counts_items_whose_preferred_answer_changes_from_strength_zero():
    #               s=-1  s=0   s=1
    p = np.array([[0.2, 0.6, 0.9],   # flips at -1
                  [0.4, 0.4, 0.7],   # flips at +1
                  [0.1, 0.3, 0.45],  # never flips
                  [0.8, 0.6, 0.3]])  # flips at +1
    rows = flips(p, [-1, 0, 1])
    assert [r["flip_share"] for r in rows] == [0.25, 0.0, 0.5] and all(r["n"] == 4 for r in rows)
    assert rows[2]["low"] < 0.5 < rows[2]["high"]
    with pytest.raises(ValueError, match="strength 0"):
        flips(p[:, [0, 2]], [-1, 1])
