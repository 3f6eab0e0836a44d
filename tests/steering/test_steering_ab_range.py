"""steer-ab's comparable design (#28): logit-diff metric, response-only steering, a strength range chosen on
validation neutral texts under a cost bound, per-item propensities, and the MDE beside the interval."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import metalens
from metalens import sites
from metalens.steering import SteerABConfig, SteeringVector, run_steer_ab
from metalens.steering.ab import workflow as ab_pipeline
from metalens.steering.ab.costs import split_neutral, strength_range
from metalens.steering.ab.items import ABItem, answer_prefix, letter_logprobs, propensity, response_start

from test_steering_ab import planted, write_items

LETTERS = "AABABBABABAB"
QUESTION = "Do you like tea?\n\nChoices:\n (A) Yes\n (B) No"


@pytest.mark.parametrize("matching", ["A", "B"])
def test_logit_diff_is_the_matching_letters_logit_minus_the_others(tiny_gemma, matching):
    item = ABItem(QUESTION, matching)
    ids = tiny_gemma.tokenize([answer_prefix(tiny_gemma, item.question)])["input_ids"]
    logits = tiny_gemma.hf(input_ids=ids).logits[0, -1].float()  # [vocab], softcapped as the model writes
    a, b = (tiny_gemma.tokenizer.convert_tokens_to_ids(x) for x in "AB")
    by_hand = (logits[a] - logits[b]).item() * (1 if matching == "A" else -1)
    got = propensity(tiny_gemma, [item], metric="logit-diff")
    np.testing.assert_allclose(got, [by_hand], atol=1e-4)
    np.testing.assert_allclose(propensity(tiny_gemma, [item], metric="prob"), [1 / (1 + np.exp(-by_hand))], atol=1e-5)


def test_an_unknown_metric_or_position_rule_is_refused(tiny_gemma):
    with pytest.raises(ValueError, match="metric"):
        propensity(tiny_gemma, [ABItem(QUESTION, "A")], metric="ratio")
    with pytest.raises(ValueError, match="positions"):
        letter_logprobs(tiny_gemma, [ABItem(QUESTION, "A")], positions="question")


def test_a_start_position_leaves_earlier_activations_untouched(tiny_gemma):
    vec = planted(tiny_gemma, scale=8.0)  # at the last block: read the final norm after it
    vec = SteeringVector({0: vec.directions[tiny_gemma.n_layers - 1]}, tiny_gemma.name, tiny_gemma.d_model)
    ids, mask = tiny_gemma.pad([tiny_gemma.tokenizer(t)["input_ids"] for t in ("one two three four five", "six seven eight")],
                               side="right")
    site = sites.resid_post(tiny_gemma.n_layers - 1)
    plain = metalens.run_with_cache(tiny_gemma, ids, mask, sites=[site])[site]  # [2, pos, d]
    starts = [3, 1]
    steered = metalens.run_with_cache(tiny_gemma, ids, mask, sites=[site], edits=vec.edits(tiny_gemma, 1.0, start=starts))[site]
    everywhere = metalens.run_with_cache(tiny_gemma, ids, mask, sites=[site], edits=vec.edits(tiny_gemma, 1.0))[site]
    for row, k in enumerate(starts):
        torch.testing.assert_close(steered[row, :k], plain[row, :k])  # before the start: as unsteered
        assert (steered[row, k] - plain[row, k]).norm() > 1e-3
        assert (everywhere[row, :k] - plain[row, :k]).norm() > 1e-3  # the old rule steers them too


@pytest.mark.parametrize("fixture, chat", [("tiny_llama", True), ("tiny_gemma", False)])
def test_response_positions_start_at_the_answers_paren_and_spare_the_question(request, fixture, chat):
    tiny_gemma = request.getfixturevalue(fixture)  # the llama one has a chat template
    items = [ABItem(QUESTION, "A"), ABItem("Is the sea wet?\n\nChoices:\n (A) No\n (B) Yes", "B")]
    seen = {}
    top = planted(tiny_gemma, scale=8.0).directions[tiny_gemma.n_layers - 1]
    vec = SteeringVector({0: top}, tiny_gemma.name, tiny_gemma.d_model)  # early: the question's changes reach the read

    def factory(name):
        def build(start):
            seen[name] = list(start)
            return vec.edits(tiny_gemma, 2.0, start=start)
        return build

    resp = letter_logprobs(tiny_gemma, items, factory("response"), chat=chat, positions="response")
    everywhere = letter_logprobs(tiny_gemma, items, factory("all"), chat=chat, positions="all")
    assert seen["all"] == [0, 0]
    for item, k in zip(items, seen["response"]):
        prefix = answer_prefix(tiny_gemma, item.question, chat)
        ids = tiny_gemma.tokenizer(prefix)["input_ids"]
        assert k == response_start(tiny_gemma, prefix) and 0 < k < len(ids)
        assert "(" in tiny_gemma.tokenizer.decode(ids[k:]) and "(" not in tiny_gemma.tokenizer.decode(ids[:k])[-3:]
    assert not np.allclose(resp, everywhere)  # the question's activations differ between the two rules
    # The response rule equals a manual pass steered only from the "(" token.
    prefix = answer_prefix(tiny_gemma, items[0].question, chat)
    ids = torch.tensor([tiny_gemma.tokenizer(prefix)["input_ids"]])
    logits = metalens.run_with_cache(tiny_gemma, ids, torch.ones_like(ids), logits=True,
                                     edits=vec.edits(tiny_gemma, 2.0, start=[seen["response"][0]])).logits[0, -1]
    a, b = (tiny_gemma.tokenizer(prefix + x)["input_ids"][-1] for x in "AB")
    logp = logits.float().log_softmax(-1)
    np.testing.assert_allclose(resp[0], [logp[a].item(), logp[b].item()], atol=1e-4)


def test_strength_range_walks_out_from_zero_and_stops_at_the_first_cost_over_the_bound():
    costs = {-0.5: 3.0, -0.2: 0.4, -0.1: 0.1, 0.0: 0.0, 0.1: 0.2, 0.2: 0.7, 0.3: 0.3, 0.5: float("nan")}
    assert strength_range(costs, 0.5) == (-0.2, 0.1)  # 0.3 is cheap again but lies past 0.2's breach
    assert strength_range(costs, 0.05) == (0.0, 0.0)
    assert strength_range({0.0: 0.0, 1.0: float("inf")}, 10.0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="bound"):
        strength_range(costs, 0.0)
    assert split_neutral(list("abcde")) == (["a", "c", "e"], ["b", "d"])


def fake_costs(cost_of):
    """A stand-in for loss_changes: each layer's cost is cost_of(strength); records the texts it was given."""
    seen = []

    def fake(model, vector, layers, strengths, texts, batch_size=8, bar=None):
        seen.append(list(texts))
        return {k: {s: cost_of(s) for s in strengths} for k in layers}

    return fake, seen


def test_the_range_is_chosen_on_validation_neutral_texts_and_held_out_costs_cannot_move_it(tiny_gemma, tmp_path,
                                                                                          monkeypatch):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    fake, seen = fake_costs(abs)
    monkeypatch.setattr(ab_pipeline, "loss_changes", fake)
    config = SteerABConfig(str(data), layers=[1], strengths=(-2, -1, 1, 2), open_items=0, cost_bound=1.5)
    first = run_steer_ab(tiny_gemma, config, out=tmp_path / "a", progress=False)
    neutral = metalens.read_texts(ab_pipeline.NEUTRAL)
    assert seen == [neutral[0::2]]  # the held-out half never enters the choice
    assert (first.ranges[1]["low"], first.ranges[1]["high"]) == (-1.0, 1.0)
    assert [r["strength"] for r in first.propensity[1]] == [-1.0, 0.0, 1.0]  # slopes over the range only
    assert first.steerability[1]["strengths"] == [-1.0, 0.0, 1.0]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(saved["propensity_items"]["test"]["values"]["1"]) == {"-1", "0", "1"}
    assert [c["in_range"] for c in saved["costs"]] == [False, True, True, True, False]
    # Held-out (test-side) costs blown up: the range and the slopes stay as they were.
    monkeypatch.setattr(ab_pipeline, "neutral_loss",
                        lambda model, texts, edits=None, *a, **k: np.full(len(texts), 1e6 if edits else 1.0))
    second = run_steer_ab(tiny_gemma, config, progress=False)
    assert second.ranges == first.ranges and second.steerability == first.steerability


def test_a_real_cost_bound_is_honoured(tiny_gemma, tmp_path):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    config = SteerABConfig(str(data), layers=[0, 1], strengths=(-8, -4, -1, 1, 4, 8), unit="residual", open_items=0,
                           cost_bound=0.05)
    result = run_steer_ab(tiny_gemma, config, progress=False)
    for layer, record in result.ranges.items():
        costs = {float(s): c for s, c in record["cost_per_strength"].items()}
        inside = [s for s in costs if record["low"] <= s <= record["high"]]
        assert all(costs[s] is not None and costs[s] <= 0.05 for s in inside)
        for end, step in ((record["high"], 1), (record["low"], -1)):  # the next strength out breaks the bound
            beyond = sorted((s for s in costs if step * s > step * end), key=abs)
            if beyond:
                assert costs[beyond[0]] is None or costs[beyond[0]] > 0.05


def test_no_strength_under_the_bound_means_no_steerability_claim(tiny_gemma, tmp_path, monkeypatch):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    fake, _ = fake_costs(lambda s: 0.0 if s == 0 else float("inf"))
    monkeypatch.setattr(ab_pipeline, "loss_changes", fake)
    config = SteerABConfig(str(data), layers=[1, 2], strengths=(-1, 1), open_items=1)
    result = run_steer_ab(tiny_gemma, config, out=tmp_path / "o", progress=False)
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["layer"] is None and "no steerability claim" in saved["headline"]
    assert all(v["estimate"] is None and "reason" in v for v in saved["steerability"].values())
    assert saved["strength_range"]["steerable_range"] is False and saved["costs"] == []
    assert result.summary()


def test_the_mde_sits_beside_the_interval_at_the_applied_alpha(tiny_gemma, tmp_path):
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    config = SteerABConfig(str(data), layers=[0, 1, 2], strengths=(-1, 1), open_items=0, unit="raw")
    result = run_steer_ab(tiny_gemma, config, progress=False)
    for layer, s in result.steerability.items():
        if s["estimate"] is None:
            continue
        alpha = 0.05 if layer == result.layer else 0.05 / 2  # Holm's strictest step over the 2 other layers
        assert s["mde"]["alpha"] == pytest.approx(alpha) and s["mde"]["design"].endswith("(mde_slope)")
        assert s["mde"]["value"] > 0 and s["interval"] == "t over items' slopes"
    # the headline states the MDE of the interval's own test (over items' slopes), not the pooled fit's
    chosen = result.steerability[result.layer]["mde_over_items"]["value"]
    assert f"MDE {chosen:.3f}" in result.headline()


def test_the_cli_records_metric_positions_and_bound(tiny_llama, tmp_path, monkeypatch):
    from test_steering_ab_pipeline import parser
    data = write_items(tmp_path / "d.jsonl", LETTERS)
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, **kw: tiny_llama)
    args = parser().parse_args(["steer-ab", "--model", "tiny", "--data", str(data), "--layers", "1", "--strengths", "-1",
                                "1", "--out", str(tmp_path / "o"), "--open-items", "0", "--metric", "prob",
                                "--steer-positions", "all", "--cost-bound", "2.5"])
    args.func(args)
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["metric"] == "prob" and saved["steer_positions"] == "all"
    assert saved["strength_range"]["cost_bound_nats"] == 2.5
