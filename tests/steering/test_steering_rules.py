"""Rule library, pairs, checkers, adherence intervals, fluency cost, sweep, rule book, MENTOR."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import metalens.steering
from metalens.steering import Rule, RuleBook, SteeringVector, adherence, token_loss
from metalens.steering.rules.checkers import PatternChecker, ProbeChecker
from metalens.steering.rules.refine import model_judge
from metalens.steering.rules.library import find_rule, read_pairs, template_pairs


def test_library_ships_rules_with_balanced_pairs_and_checkers():
    lib = metalens.steering.library()
    assert {"ocean", "space", "food", "cheerful", "no_dosage"} <= set(lib)
    for name, rule in lib.items():
        pos, neg, positions = metalens.steering.pairs_for_rule(rule)
        assert len(pos) == len(neg) >= 12 and positions == "mean"
        checker = metalens.steering.checker_for(rule)
        assert sum(checker(pos)) / len(pos) >= 0.9, name  # the shipped positives follow their rule
        assert sum(checker(neg)) / len(neg) <= 0.1, name  # and the negatives do not


def test_find_rule_by_text_and_templates_for_new_rules():
    assert find_rule("Always talk about the ocean.").name == "ocean"
    new = find_rule("Speak like a pirate")
    pos, neg, positions = metalens.steering.pairs_for_rule(new)
    assert positions == "last" and len(pos) == len(neg)
    assert all("Speak like a pirate" in p and "follows" in p for p in pos)
    with pytest.raises(ValueError, match="rule is empty"):
        template_pairs("  ")


def test_user_pairs_file_is_read_with_prompt_prefix(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "positive": "yes", "negative": "no"}) + "\n")
    assert read_pairs(path) == (["Q yes"], ["Q no"])
    path.write_text(json.dumps({"positive": "yes"}) + "\n")
    with pytest.raises(ValueError, match="lacks key"):
        read_pairs(path)


def test_pattern_checker_keywords_regex_and_forbid():
    check = PatternChecker(["sea"], forbid=r"\d+ ?mg")
    assert check(["The sea!", "seasoned food", "sea, 5 mg", "nothing"]) == [True, False, False, False]
    refuse = metalens.steering.checker_for(metalens.steering.library()["no_dosage"])
    assert refuse(["I can't say; ask a doctor.", "Take 200 mg twice a day.", "Ask a doctor, take 2 tablets."]) == \
        [True, False, False]


def test_wilson_interval_known_values():
    a = adherence([True] * 8 + [False] * 2)
    assert math.isclose(a.rate, 0.8) and math.isclose(a.low, 0.4902, abs_tol=1e-3) and math.isclose(a.high, 0.9433, abs_tol=1e-3)
    zero = adherence([False] * 10)
    assert zero.low == 0.0 and 0.25 < zero.high < 0.35
    with pytest.raises(ValueError):
        adherence([])


def test_probe_checker_separates_texts_by_model_activations(tiny_gemma):
    pos = [f"zzzz {w} zzzz" for w in "abcdefgh"]
    neg = [f"1111 {w} 1111" for w in "abcdefgh"]
    probe = ProbeChecker(tiny_gemma, layer=1).fit(pos, neg)
    assert probe(["zzzz q zzzz", "1111 q 1111"]) == [True, False]


def test_token_loss_matches_full_forward(tiny_gemma):
    prompts, comps = ["abc", "hello there"], ["de", "xyz!"]
    got = token_loss(tiny_gemma, prompts, comps)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        ids = tiny_gemma.tokenizer(p + c, return_tensors="pt")["input_ids"]
        n = len(c)  # character tokenizer: one token per character
        logp = tiny_gemma.hf(input_ids=ids).logits[0, :-1].log_softmax(-1)
        want = -logp[-n:].gather(-1, ids[0, -n:, None]).mean().item()
        assert math.isclose(got[i], want, rel_tol=1e-4)
    assert np.isnan(token_loss(tiny_gemma, ["abc"], [""])[0])


def test_sweep_has_baseline_and_every_setting_and_a_figure(tiny_gemma):
    check = PatternChecker(["e"])
    result = metalens.steering.sweep(tiny_gemma, ["aaa bbb", "aab"], ["ccc ddd", "ccd"], check, ["hi", "yo", "ok"],
                            layers=[0, 2], strengths=(1.0, 3.0), max_new_tokens=4)
    assert [(r["layer"], r["strength"]) for r in result.rows] == [(0, 0.0), (0, 1.0), (0, 3.0), (2, 0.0), (2, 1.0), (2, 3.0)]
    assert all(r["fluency_cost"] == 0.0 for r in result.rows if r["strength"] == 0)
    assert result.best(max_fluency_cost=float("inf"))["strength"] != 0
    assert len(result.figure().data) == 4


def test_rulebook_grows_without_touching_existing_vectors_and_round_trips(tiny_gemma, tmp_path):
    a = SteeringVector({1: torch.randn(64)}, tiny_gemma.name, 64)
    book = RuleBook()
    book.add(Rule("general", "Be kind"), a, strength=2.0)
    book.save(tmp_path / "book")
    grown = RuleBook.load(tmp_path / "book")
    grown.add(Rule("specific", "Be kind to children", parent="general"), SteeringVector({0: torch.randn(64)}, tiny_gemma.name, 64))
    grown.save(tmp_path / "book")
    back = RuleBook.load(tmp_path / "book")
    torch.testing.assert_close(back["general"].vector.directions[1], a.directions[1])
    assert back["general"].strength == 2.0 and [e.name for e in back.children("general")] == ["specific"]
    assert "Be kind to children" in back.tree()
    with pytest.raises(ValueError, match="already in the book"):
        back.add(Rule("general", "x"), a)
    with pytest.raises(ValueError, match="not in the book"):
        back.add(Rule("orphan", "x", parent="missing"), a)


def test_refinement_turns_flagged_responses_into_negatives_raises_strength_and_adds_child(tiny_gemma):
    pos, neg = ["aaa bbb", "aab"], ["ccc ddd", "ccd"]
    vec = metalens.steering.train_steering_vector(tiny_gemma, pos, neg, layers=[1])
    book = RuleBook()
    book.add(Rule("r", "rule", keywords=["never-appears"]), vec, strength=1.0)
    seen = []

    def judge(prompts, responses, rule):
        seen.append(len(responses))
        return [(False, "aaa") for _ in responses]  # flag everything, with a correction

    checker = PatternChecker(["never-appears"])
    log = metalens.steering.refine_rules(tiny_gemma, book, "r", pos, neg, ["hi", "yo"], ["ok", "no"], checker, judge,
                          rounds=3, patience=2, max_new_tokens=3)
    assert [r["round"] for r in log.rows] == [0, 1, 2, 3] and seen == [2, 2, 2]
    assert all(r["flagged"] == 2 for r in log.rows[1:])
    assert [r["strength"] for r in log.rows] == pytest.approx([1.0, 1.0, 1.5, 1.5 ** 2])  # raised: no improvement
    assert [r["n_rules"] for r in log.rows] == [1, 1, 1, 2] and "child rule r.3" in log.rows[3]["action"]
    assert "retrained on 8+/8-" in log.rows[3]["action"]  # 2 + 3*2 negatives, 2 + 3*2 corrections
    # no round beat round 0 on the validation prompts, so the loop hands back round 0's book
    assert log.best_round == 0 and len(book) == 1 and book["r"].strength == 1.0 and book["r"].vector.n_pairs == 2


def test_model_judge_returns_one_verdict_per_response(tiny_gemma):
    judge = model_judge(tiny_gemma)
    out = judge(["q1", "q2", "q3"], ["a", "b", "c"], Rule("r", "be nice"))
    assert len(out) == 3 and all(isinstance(v, bool) for v in out)


def test_model_judge_compares_yes_and_no_logits_at_each_rows_last_token(tiny_gemma):
    tok = tiny_gemma.tokenizer
    yes, no = tok(" Yes", add_special_tokens=False)["input_ids"][-1], tok(" No", add_special_tokens=False)["input_ids"][-1]
    template = "{rule}|{prompt}|{response}"
    prompts, responses = ["q", "a longer question", "zz"], ["a", "b", "a much longer answer"]
    got = model_judge(tiny_gemma, template)(prompts, responses, Rule("r", "be nice"))
    want = []
    for p, r in zip(prompts, responses):  # one text at a time: no padding at all
        logits = tiny_gemma.hf(**tiny_gemma.tokenize([f"be nice|{p}|{r}"])).logits[0, -1]
        want.append(bool(logits[yes] > logits[no]))
    assert got == want


def test_rulebook_is_one_versioned_artifact_and_old_books_still_load(tmp_path):
    vec = SteeringVector({1: torch.arange(4.0)}, "m", 4)
    book = RuleBook()
    book.add(Rule("general", "Be kind"), vec, strength=2.0)
    book.add(Rule("general.1", "Be kind, even here", parent="general"), vec.scaled(-1.0))
    book.save(tmp_path / "new")
    meta = json.loads((tmp_path / "new" / "rulebook.json").read_text())
    assert meta["format"] == {"name": "rulebook", "version": 1}
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["rulebook.json", "rulebook.safetensors"]
    back = RuleBook.load(tmp_path / "new")
    torch.testing.assert_close(back["general.1"].vector.directions[1], -torch.arange(4.0))
    # The layout before metalens.artifact: rulebook.json naming one vector file pair per rule.
    old = tmp_path / "old"
    vec.save(tmp_path / "v")
    (old / "vectors").mkdir(parents=True)
    for ext in ("safetensors", "json"):
        (old / "vectors" / f"general.{ext}").write_bytes((tmp_path / "v" / f"steering_vector.{ext}").read_bytes())
    (old / "rulebook.json").write_text(json.dumps({"model": "m", "rules": [
        {"rule": Rule("general", "Be kind").to_dict(), "strength": 2.0, "enabled": False, "history": [],
         "vector": "vectors/general.safetensors"}]}))
    loaded = RuleBook.load(old)
    assert loaded["general"].strength == 2.0 and not loaded["general"].enabled
    torch.testing.assert_close(loaded["general"].vector.directions[1], torch.arange(4.0))
