"""The utility sampler: its formulas by enumeration, its action choice on planted cases, and live branching."""
import itertools
import json

import numpy as np
import pytest
import torch

from metalens.introspect import BinSpec, ReservedHead
from metalens.introspect.sampling.utility import (Reading, choose_actions, expected_max_length, expected_max_reward, outcome,
                                         set_utility)

SPEC = BinSpec(edges=(1, 2, 4, 8))  # bin lengths ~1, 2.4, 5.3, 11.2


def test_expected_max_reward_matches_enumeration():
    values = np.array([0.0, 0.5, 1.0])
    rng = np.random.default_rng(0)
    dists = [rng.dirichlet(np.ones(3)) for _ in range(3)]
    brute = sum(np.prod([d[s] for d, s in zip(dists, states)]) * values[list(states)].max()
                for states in itertools.product(range(3), repeat=3))
    assert expected_max_reward(dists, values) == pytest.approx(brute)
    # binary rewards: 1 - prod(1 - p)
    assert expected_max_reward([np.array([0.7, 0.3]), np.array([0.4, 0.6])], np.array([0.0, 1.0])) == \
        pytest.approx(1 - 0.7 * 0.4)
    assert expected_max_reward([], values) == 0.0


def test_expected_latency_is_the_expected_longest_remaining_length_by_enumeration():
    lengths = [np.array([1.0, 4.0, 9.0]), np.array([2.0, 4.0]), np.array([3.0])]
    probs = [np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.4]), np.array([1.0])]
    brute = sum(np.prod([p[i] for p, i in zip(probs, pick)]) * max(x[i] for x, i in zip(lengths, pick))
                for pick in itertools.product(*[range(len(x)) for x in lengths]))
    assert expected_max_length(lengths, probs) == pytest.approx(brute)
    assert expected_max_length([np.array([5.0])], [np.array([1.0])]) == 5.0
    assert expected_max_length([], []) == 0.0


def _joint(p_correct: float, length_bin: int) -> np.ndarray:
    """A reading with all its length mass in one bin: [R=2, L=4]."""
    joint = np.zeros((2, 4))
    joint[1, length_bin], joint[0, length_bin] = p_correct, 1 - p_correct
    return joint


def test_an_end_past_the_budget_counts_as_reward_zero():
    reward, lengths, probs = outcome(Reading(_joint(0.9, 3), used=30), SPEC, budget=36)  # bin 3 (~11) > 6 left
    assert reward.tolist() == pytest.approx([1.0, 0.0])
    assert lengths[3] == 6  # the remaining length is capped at the tokens left
    reward, _, _ = outcome(Reading(_joint(0.9, 3), used=0), SPEC, budget=36)
    assert reward.tolist() == pytest.approx([0.1, 0.9])


def test_utility_prices_tokens_and_latency():
    one = [Reading(_joint(0.5, 2))]
    base = set_utility(one, [], SPEC, 0.0, 0.0, 48)
    assert base == pytest.approx(0.5)
    length = float(SPEC.bin_lengths()[2])
    assert set_utility(one, [], SPEC, 0.01, 0.0, 48) == pytest.approx(0.5 - 0.01 * length)
    assert set_utility(one + one, [], SPEC, 0.0, 0.1, 48) == pytest.approx(0.75 - 0.1 * length)


def test_a_hopeless_long_sample_is_stopped():
    actions = choose_actions({0: Reading(_joint(0.01, 3)), 1: Reading(_joint(0.9, 0))}, [], _joint(0.5, 3), SPEC,
                             alpha=0.01, beta=0.0, budget=48)
    assert actions == [("stop", 0)]


def test_a_promising_running_sample_is_branched_rather_than_a_new_one_started():
    # the prompt reads 0.1; sample 0 reads 0.6 with little left: a copy of its prefix is worth more
    actions = choose_actions({0: Reading(_joint(0.6, 1), used=10)}, [], _joint(0.1, 3), SPEC, alpha=0.001, beta=0.0,
                             budget=48, can_start=1)
    assert actions == [("branch", 0)]
    assert choose_actions({0: Reading(_joint(0.6, 1), used=10)}, [], _joint(0.1, 3), SPEC, alpha=0.001, beta=0.0,
                          budget=48, can_start=1, branch=False) == [("start", None)]
    assert choose_actions({0: Reading(_joint(0.6, 1))}, [], _joint(0.1, 3), SPEC, 0.001, 0.0, 48,
                          can_start=0) == []  # no samples left: continue


def test_latency_cost_refuses_a_start_that_tokens_alone_would_allow():
    running = {0: Reading(_joint(0.3, 0), used=5)}  # about to end
    prior = _joint(0.5, 3)  # a new sample reads 0.5 but takes ~11 steps
    assert choose_actions(running, [], prior, SPEC, alpha=0.001, beta=0.0, budget=48, can_start=1,
                          branch=False) == [("start", None)]
    assert choose_actions(running, [], prior, SPEC, alpha=0.001, beta=0.05, budget=48, can_start=1,
                          branch=False) == []


def test_a_finished_likely_answer_makes_more_samples_not_worth_it():
    assert choose_actions({}, [np.array([0.01, 0.99])], _joint(0.5, 2), SPEC, alpha=0.001, beta=0.0, budget=48,
                          can_start=3) == []
    assert choose_actions({}, [], _joint(0.5, 2), SPEC, alpha=0.001, beta=0.0, budget=48,
                          can_start=3) == [("start", None)] * 3


def _head(model, seed=0):
    head = ReservedHead.from_model(model, SPEC)
    head.weight = torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.3
    return head


def test_a_branch_continues_its_parents_prefix_from_a_copy_of_its_cache(tiny_gemma, monkeypatch):
    from metalens.introspect.sampling import branching

    model, head = tiny_gemma, _head(tiny_gemma)
    calls = []

    def branch_once(running, finished, prior, spec, alpha, beta, budget, can_start=0, branch=True):
        calls.append(sorted(running))
        return [("branch", 0)] if len(calls) == 1 and 0 in running else []

    monkeypatch.setattr(branching, "choose_actions", branch_once)
    prompt = model.tokenizer("Q: 3 + 4?\nA:")["input_ids"]
    run = branching.utility_generate(model, head, prompt, alpha=0.0, every=3, max_samples=4, max_new_tokens=10,
                                     temperature=0)
    from metalens.introspect.rollouts.decode import sample

    with head.applied(model):
        alone = sample(model, prompt, 1, max_new_tokens=10, temperature=0, head=head).tokens[0]
    # greedy: the branch (sample 1) copies sample 0's 3-token prefix and continues exactly as its parent
    assert run.events[0] == {"step": 3, "actions": [["branch", 0]]} and len(alone) > 3
    assert run.texts[1] == run.texts[0] == model.tokenizer.decode(alone, skip_special_tokens=True)
    assert run.tokens == len(alone) + (len(alone) - 3)  # the copied prefix is not spent again
    assert run.token_ids[0] == run.token_ids[1] == alone
    assert run.steps == len(alone) and sorted(run.finished) == [0, 1]


def test_the_utility_sampler_never_samples_reserved_tokens_and_leaves_the_model(tiny_gemma):
    from metalens.introspect.sampling.branching import utility_generate

    model, head = tiny_gemma, _head(tiny_gemma, seed=3)
    batch = model.tokenize(["Q: 1 + 1?"])
    before = model.hf(**batch).logits
    run = utility_generate(model, head, model.tokenizer("Q: 2 + 2?\nA:")["input_ids"], alpha=0.0, beta=0.0,
                           max_samples=4, max_new_tokens=8, temperature=1.0, min_p=0.05, seed=0)
    assert torch.equal(model.hf(**batch).logits, before)
    assert len(run.texts) == 4  # free tokens: every sample it may draw is drawn (started or branched)
    assert not {t for ids in run.token_ids.values() for t in ids} & set(head.token_ids)
    assert run.tokens <= 4 * 8 and run.steps <= 8 * 4
    again = utility_generate(model, head, model.tokenizer("Q: 2 + 2?\nA:")["input_ids"], alpha=0.0, beta=0.0,
                             max_samples=4, max_new_tokens=8, temperature=1.0, min_p=0.05, seed=0)
    assert again.texts == run.texts


def _trained_on_planted_store(tmp_path, monkeypatch):
    """A head-mode head trained through the CLI on 8 planted questions, half held out: its run dir."""
    import metalens
    from metalens.cli import main
    from metalens.testing import tiny_model
    from test_introspect_full import _planted_store

    model = tiny_model("gemma3", seed=10)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _planted_store(model, tmp_path / "r", n=8)
    out = tmp_path / "run"
    assert main(["introspect", "train", "--out", str(out), "--rollouts", str(tmp_path / "r"), "--steps", "30",
                 "--test-fraction", "0.5"]) == 0
    return out


def test_sample_reports_the_utility_sampler_against_matched_baselines(tmp_path, monkeypatch):
    from metalens.cli import main

    out = _trained_on_planted_store(tmp_path, monkeypatch)
    assert main(["introspect", "sample", "--train", str(out), "--out", str(out / "s"), "--alphas", "0",
                 "--utility", "3", "--utility-alphas", "0", "0.01", "--utility-betas", "0", "0.1"]) == 0
    rows = json.loads((out / "s" / "results.json").read_text())["utility"]
    assert [(r["alpha"], r["beta"]) for r in rows] == [(0, 0), (0, 0.1), (0.01, 0), (0.01, 0.1)]
    free = rows[0]
    assert free["n_problems"] == 3 and set(free["vs"]) == {"majority", "best_of_n", "prune_only"}
    assert free["tokens"] > 0 and free["latency"] > 0
    compared = [v for r in rows for v in r["vs"].values() if "p_holm" in v]
    assert compared and all(v["n_comparisons"] == len(compared) for v in compared)
    assert all(set(v["by_level"]) <= {"1", "2"} for v in compared)
    # the headline: per question wins / ties / losses against majority and best-of-N, sign test and mde
    data = json.loads((out / "s" / "results.json").read_text())
    table = data["comparisons"]
    assert [(c["alpha"], c["beta"], c["baseline"]) for c in table] == [
        (a, b, name) for a, b in [(0, 0), (0, 0.1), (0.01, 0), (0.01, 0.1)] for name in ("majority", "best_of_n")
        if rows[[(r["alpha"], r["beta"]) for r in rows].index((a, b))]["vs"][name]["setting"] is not None]
    for c in table:
        assert c["wins"] + c["ties"] + c["losses"] == 3 and 0 <= c["p_sign"] <= c["p_holm"] <= 1
        assert c["n_comparisons"] == len(table) and c["mde"]["n"] == c["wins"] + c["losses"]
        assert c["mde"]["value"] is None  # 3 questions: no win share is detectable, written as null
    # 3 questions: the accuracy intervals are not computed, null in the json with the reason beside
    assert all(v["ci95"] == [None, None] and v["ci_method"].startswith("not computed: 3 units") for v in compared)
    report = (out / "s" / "report.html").read_text()
    assert "wins / ties / losses" in report and ">nan<" not in report


def test_cross_validated_utility_runs_read_each_question_with_its_folds_head(tmp_path, monkeypatch):
    from metalens.cli import main
    from metalens.introspect.sampling import branching
    from metalens.introspect.evaluation.crossval import problem_folds
    from metalens.introspect.rollouts.store import load_rollouts

    out = _trained_on_planted_store(tmp_path, monkeypatch)
    used = {}
    real = branching.utility_generate

    def spy(model, head, prompt_ids, *args, **kwargs):
        used.setdefault(tuple(prompt_ids), set()).add(id(head))
        return real(model, head, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(branching, "utility_generate", spy)
    assert main(["introspect", "sample", "--train", str(out), "--out", str(out / "s"), "--alphas", "0",
                 "--cv", "2", "--utility", "8", "--utility-alphas", "0", "--utility-betas", "0"]) == 0
    rows = json.loads((out / "s" / "results.json").read_text())["utility"]
    assert rows[0]["n_problems"] == 8  # every question, not only the 4 held out
    records = {r["task_index"]: r for r in load_rollouts(tmp_path / "r")}
    heads = {t: used[tuple(records[t]["prompt_ids"])] for t in records}
    assert all(len(h) == 1 for h in heads.values())  # one head per question across its runs
    from types import SimpleNamespace

    import torch
    from metalens.introspect.rollouts import problem_units

    folds = problem_folds(SimpleNamespace(task=torch.tensor(sorted(records))), 2, seed=0,
                          units=problem_units(list(records.values())))
    per_fold = [{next(iter(heads[t])) for t in fold} for fold in folds]
    assert all(len(h) == 1 for h in per_fold) and per_fold[0] != per_fold[1]  # the same head within a fold only
