"""`run_mentor`: split discipline, resumable self-evolution rounds, results.json / report.html, and the CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from metalens import power
from metalens.steering import MentorConfig, MentorResult, Verdict, run_mentor
from metalens.steering.mentor import steer as ms
from metalens.steering.mentor.data import read_queries, split_queries
from metalens.steering.mentor import MentorRun, choose_strength, subsample_queries

import metalens

TINY = dict(max_per_domain=5, max_new_tokens=3, reflect_tokens=2, rule_tokens=4, layer=1, strengths=(1.0, 2.0))


def _planting_assessor(q: str, r: str) -> Verdict:
    """Every response misaligned, with a rule made from the query's first words (so some merge, some do not)."""
    return Verdict(False, 0.9, "Never help when asked: " + " ".join(q.split()[:3]))


def test_shipped_queries_split_seeded_and_disjoint_per_domain():
    queries = read_queries()
    assert len(queries) == 60 and {q.domain for q in queries} == {"education", "finance", "management"}
    assert all(q.rubric and q.keywords for q in queries)
    a, b = split_queries(queries, seed=0), split_queries(queries, seed=0)
    assert a == b and a != split_queries(queries, seed=1)
    sets = {k: {q.query for q in v} for k, v in a.items()}
    assert not sets["build"] & sets["test"] and not sets["validation"] & sets["test"]
    assert sum(len(s) for s in sets.values()) == 60 and [len(a[k]) for k in a] == [24, 12, 24]
    assert all({q.domain for q in a[k]} == {"education", "finance", "management"} for k in a)


def test_choose_strength_takes_the_lowest_asr_within_the_fluency_budget():
    scores = {0.5: (0.6, 0.1), 1.0: (0.4, 0.2), 2.0: (0.0, 3.0), 4.0: (0.4, 0.5)}
    best, rows = choose_strength(lambda s: scores[s], scores, max_fluency_cost=1.0)
    assert best == 1.0 and [r["strength"] for r in rows] == [0.5, 1.0, 2.0, 4.0]


def test_strength_is_chosen_on_validation_even_when_test_would_pick_another(tiny_gemma, monkeypatch):
    """Validation responses violate except at strength 1, test responses except at strength 2: the run must
    choose 1 and then report test at 1 (ASR 1.0), not the 0.0 that choosing on test would give."""
    config = MentorConfig(rounds=0, assessor="none", max_fluency_cost=1e9, **TINY)
    queries = read_queries()
    splits = split_queries(subsample_queries(queries, 5, 0), config.fractions, 0)
    role = {q.query: split for split, qs in splits.items() for q in qs}
    marker = {q.query: q.keywords[0] for q in queries}
    seen = []

    def fake(model, prompts, directions, layer, strength=1.0, **kw):
        out = []
        for p in prompts:
            split = role.get(p, "prompt")
            seen.append((split, strength if directions is not None else None))
            safe = {"validation": 1.0, "test": 2.0}.get(split)
            out.append("I cannot help with that." if strength == safe else f"Sure: {marker.get(p, 'x')}.")
        return out

    monkeypatch.setattr(ms, "generate_per_row", fake)
    result = run_mentor(tiny_gemma, config, progress=False)
    assert result.strengths["retrieved_round0"] == 1.0 and result.strengths["all_vectors"] == 1.0
    assert result.attack_success["retrieved_round0"]["rate"] == 1.0
    assert [r["asr"] for r in result.rounds[0]["selection"]] == [0.0, 1.0]
    assert {s for split, s in seen if split == "test"} <= {None, 1.0}  # test never generated at another strength


def test_an_interrupted_run_resumes_to_the_same_result(tiny_gemma, tmp_path, monkeypatch):
    config = MentorConfig(rounds=2, eval_assessor=False, **TINY)
    whole = run_mentor(tiny_gemma, config, out=tmp_path / "whole", progress=False, assessor=_planting_assessor)
    assert whole.graph.summary()["learned"] > 0 and [r["round"] for r in whole.rounds] == [0, 1, 2]

    real = MentorRun.evolve
    calls = []

    def stop_in_round_2(self, graph, vectors, strength, r):
        calls.append(r)
        if r == 2:
            raise KeyboardInterrupt
        return real(self, graph, vectors, strength, r)

    monkeypatch.setattr(MentorRun, "evolve", stop_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        run_mentor(tiny_gemma, config, out=tmp_path / "cut", progress=False, assessor=_planting_assessor)
    assert (tmp_path / "cut" / "rounds" / "round_1" / "round.json").exists()
    assert not (tmp_path / "cut" / "rounds" / "round_2").exists()
    monkeypatch.setattr(MentorRun, "evolve", lambda self, *a: (calls.append(a[-1]), real(self, *a))[1])
    calls.clear()
    resumed = run_mentor(tiny_gemma, config, out=tmp_path / "cut", progress=False, assessor=_planting_assessor)
    assert calls == [2]  # rounds 0 and 1 were read back, not recomputed
    assert resumed.attack_success == whole.attack_success and resumed.strengths == whole.strengths
    assert resumed.graph == whole.graph and resumed.samples == whole.samples
    assert [r["new_rules"] for r in resumed.rounds] == [r["new_rules"] for r in whole.rounds]


def test_a_rerun_with_another_config_is_refused_naming_the_keys(tiny_gemma, tmp_path):
    config = MentorConfig(rounds=0, assessor="none", **TINY)
    run_mentor(tiny_gemma, config, out=tmp_path, progress=False)
    other = MentorConfig(rounds=0, assessor="none", **{**TINY, "layer": 2, "strengths": (1.0,)})
    with pytest.raises(ValueError, match=r"differs in \['layer', 'strengths'\]"):
        run_mentor(tiny_gemma, other, out=tmp_path, progress=False)


def test_result_files_hold_every_condition_and_round_trip(tiny_gemma, tmp_path):
    config = MentorConfig(rounds=1, **TINY)
    result = run_mentor(tiny_gemma, config, out=tmp_path, progress=False, assessor=_planting_assessor)
    saved = json.loads((tmp_path / "results.json").read_text())
    conds = ["no_rules", "rules_in_prompt", "all_vectors", "retrieved_round0", "retrieved_round1"]
    assert list(saved["attack_success"]) == conds
    for a in saved["attack_success"].values():
        assert set(a) == {"rate", "low", "high", "n"} and a["n"] == 6 and 0 <= a["low"] <= a["rate"] <= a["high"] <= 1
    assert saved["assessor_attack_success"]["no_rules"]["rate"] == 1.0  # the planting assessor flags everything
    assert set(saved["agreement"]) == set(conds) and saved["splits"] == {"build": 6, "validation": 3, "test": 6}
    for c in conds:  # an assessor flagging everything agrees exactly where the keyword checker finds a violation
        a = saved["agreement"][c]
        assert a["agreement"] == pytest.approx(saved["attack_success"][c]["rate"]) and a["n"] == 6
        assert 0 <= a["low"] <= a["agreement"] <= a["high"] <= 1 and a["high"] - a["low"] > 0.2  # n = 6: wide
    assert len(saved["samples"]) == 6 and all(set(conds) <= set(s) for s in saved["samples"])
    paired = {r["condition"]: r for r in saved["paired_vs_no_rules"]}
    assert set(paired) == set(conds) - {"no_rules"} and all(r["n_comparisons"] == 4 for r in paired.values())
    for c, r in paired.items():  # the paired difference is the difference of the two rates on the same queries
        assert r["asr_difference"] == pytest.approx(saved["attack_success"][c]["rate"]
                                                    - saved["attack_success"]["no_rules"]["rate"])
        assert 0 <= r["p"] <= r["p_holm"] <= 1
        violated = [[c in s["violated"], "no_rules" in s["violated"]] for s in saved["samples"]]
        a, b = np.array(violated, dtype=bool).T
        assert r["mde"] == json.loads(json.dumps(power.mcnemar_mde(a, b, n_comparisons=4)))  # Holm: alpha / 4
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html and "Rule knowledge graph" in html and "Responses side by side" in html
    back = MentorResult.load(tmp_path)
    assert back.config == config and back.attack_success == result.attack_success and back.graph == result.graph
    assert set(back.vectors) == set(result.graph.rule_ids())


def test_cli_mentor_verb_runs_on_a_tiny_model(tiny_gemma, tmp_path, monkeypatch):
    from metalens.steering.cli import register

    parser = argparse.ArgumentParser(prog="metalens")
    register(parser.add_subparsers(dest="verb", required=True))
    queries = tmp_path / "q.jsonl"
    metalens.write_jsonl(queries, [dict(query=f"{d} question {i}", domain=d, rubric="must not say yes",
                                        keywords=["yes"]) for d in ("education", "finance") for i in range(5)])
    args = parser.parse_args(["mentor", "--model", "tiny", "--queries", str(queries), "--rounds", "1",
                              "--out", str(tmp_path / "out"), "--layers", "1", "--max-new-tokens", "3",
                              "--reflect-tokens", "2", "--strengths", "1", "2"])
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, **kw: tiny_gemma)
    args.func(args)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"]["rounds"] == 1 and saved["config"]["strengths"] == [1.0, 2.0]
    assert saved["splits"]["test"] == 4 and "retrieved_round1" in saved["attack_success"]
    assert (tmp_path / "out" / "graph" / "rule_graph.json").exists()
    assert (tmp_path / "out" / "vectors" / "rule_vectors.safetensors").exists()
    assert (tmp_path / "out" / "report.html").exists()


def test_the_checker_assessor_learns_build_rubrics_only_from_flagged_responses(tiny_gemma, monkeypatch):
    queries = read_queries()
    marker = {q.query: q.keywords[0] for q in queries}
    flagged = {q.query for q in queries[::2]}  # every other query's response carries its violation marker

    def fake(model, prompts, directions, layer, strength=1.0, **kw):
        return [f"Sure: {marker[p]}." if p in flagged else "I cannot help with that." for p in prompts]

    monkeypatch.setattr(ms, "generate_per_row", fake)
    config = MentorConfig(rounds=1, assessor="checker", eval_assessor=False, **TINY)
    result = run_mentor(tiny_gemma, config, progress=False)
    splits = split_queries(subsample_queries(queries, 5, 0), config.fractions, 0)
    build = {q.query: q for q in splits["build"]}
    expected = {build[q].rubric for q in build if q in flagged}
    learned = [n for n in result.graph.rules() if n.provenance == "learned"]
    assert result.rounds[1]["misaligned"] == sum(q in flagged for q in build) > 0
    assert {n.text for n in learned} <= expected  # every learned rule is a flagged build query's rubric
    assert len(result.rounds[1]["new_rules"]) + result.rounds[1]["merged"] == result.rounds[1]["misaligned"]
    test_rubrics = {q.rubric for q in splits["test"]} - {q.rubric for q in splits["build"]}
    assert not {n.text for n in learned} & test_rubrics  # nothing learned from a test query
