"""Sensitivity of MENTOR on a tiny model: a topic rule becomes MENTOR's inputs, strength 0 steers nothing, a
model where the topic is steerable is detected at a large strength, trials are judged by run_mentor's own
comparisons, false positives are counted from what each run called, and the CLI checks before it loads."""
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import metalens.steering.mentor.sensitivity as sens
from metalens.sensitivity import RESULT_KEYS
from metalens.steering.mentor import KeywordChecker, MentorConfig, TopicRule, read_queries, run_mentor
from tests.steering.mentor_topic_plant import topic_follower
from tests.spying import spy_on

BASE = MentorConfig(assessor="checker", eval_assessor=False, rounds=1, layer=1, max_new_tokens=3)
RULE = TopicRule("ocean", "Always talk about the ocean", keywords=["~"])  # the tiny plant writes "~" (one token)
LARGE = 8.0


def sweep(model, planted: bool, tmp_path_factory):
    """A sensitivity run (strengths 0 and LARGE, two seeds) with a spy on the workflow it calls."""
    out = tmp_path_factory.mktemp("sens")
    config = sens.MentorSensitivityConfig(BASE, rule=RULE, strengths=(0, LARGE), seeds=2)
    with spy_on(sens, "run_mentor") as calls:
        if planted:
            with topic_follower(model, "ocean", "~", 1, RULE.queries()):
                result = sens.run_mentor_sensitivity(model, config, out=out, progress=False)
        else:
            result = sens.run_mentor_sensitivity(model, config, out=out, progress=False)
    return result, calls, out


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_llama):
    return sweep(tiny_llama, True, tmp_path_factory)


@pytest.fixture(scope="module")
def unplanted(tmp_path_factory, tiny_llama):
    return sweep(tiny_llama, False, tmp_path_factory)


def responses(result, condition):
    return [s[condition] for s in result.samples]


def test_strength_zero_steers_nothing(planted):
    _, calls, _ = planted
    for seed in (0, 1):
        zero = next(r for c, r in calls if c.seed == seed and c.strengths == (0.0,))
        large = next(r for c, r in calls if c.seed == seed and c.strengths == (LARGE,))
        for condition in ("all_vectors", "retrieved_round0", "retrieved_round1"):
            assert responses(zero, condition) == responses(zero, "no_rules"), condition
            assert responses(large, condition) != responses(large, "no_rules")  # the check can fail
        for condition in ("no_rules", "rules_in_prompt"):  # the strength touches the steered conditions only
            assert responses(zero, condition) == responses(large, condition)


def test_a_large_strength_is_detected_where_the_topic_is_steerable(planted):
    result, calls, _ = planted
    rows = {r["strength"]: r["detected_share"] for r in result.detection}
    assert rows == {0.0: 0.0, LARGE: 1.0} and result.min_detectable_strength == LARGE
    large = next(r for c, r in calls if c.strengths == (LARGE,))
    assert large.attack_success["no_rules"]["rate"] == 1.0 and large.attack_success["retrieved_round1"]["rate"] == 0.0


def test_an_unsteerable_model_is_not_detected(unplanted):
    result, _, _ = unplanted
    assert [r["detected_share"] for r in result.detection] == [0.0, 0.0] and result.min_detectable_strength is None


@pytest.mark.parametrize("which", ["planted", "unplanted"])
def test_sensitivity_runs_call_the_published_workflow_with_its_rule(which, request):
    result, calls, _ = request.getfixturevalue(which)
    assert sens.run_mentor is run_mentor  # the spy is gone; the module calls the public workflow
    assert [(c.seed, c.strengths) for c, _ in calls] == [(0, (0.0,)), (0, (LARGE,)), (1, (0.0,)), (1, (LARGE,))]
    assert all(replace(c, queries=None, tree=None, strengths=BASE.strengths, seed=0) == BASE for c, _ in calls)
    for (config, res), run in zip(calls, result.runs):
        rows = {r["condition"]: r for r in res.paired()}
        assert all(r["n_comparisons"] == 4 and r["test"] == "exact McNemar" for r in rows.values())  # 2 + rounds + 1
        last = rows["retrieved_round1"]
        fluent = all(not math.isfinite(r["fluency_cost"]) or r["fluency_cost"] <= BASE.max_fluency_cost
                     for r in res.rounds[-1]["selection"])  # within budget as choose_strength reads it
        assert run["detected"] == (last["p_holm"] < 0.05 and last["asr_difference"] < 0 and fluent)
        assert run["details"]["paired"]["retrieved_round1"]["p_holm"] == last["p_holm"]


@pytest.mark.parametrize("which", ["planted", "unplanted"])
def test_false_positives_are_counted_from_what_each_run_called(which, request):
    result, calls, _ = request.getfixturevalue(which)
    for (config, res), run in zip(calls, result.runs):
        rows = [r for r in res.paired() if r["condition"] != "rules_in_prompt"]
        called = [r for r in rows if r["p_holm"] < 0.05]
        worse = [r for r in called if r["asr_difference"] > 0]
        # nothing steered at strength 0: every condition is no_rules' replies, so no run there can count
        assert run["false_positive"] == (None if config.strengths == (0.0,) else bool(worse))
    counted = [r["false_positive"] for r in result.runs if r["strength"] > 0]
    assert result.false_positive_share == np.mean(counted) and result.false_positive_n == 2


def fake(rows, rounds=1, strength=2.0, cost=0.3):
    paired = [{"condition": c, "asr_difference": d, "p_holm": p} for c, (d, p) in rows.items()]
    conditions = ["no_rules", "rules_in_prompt", *rows]
    selection = [{"strength": strength, "asr": 0.5, "fluency_cost": cost}]
    return SimpleNamespace(paired=lambda: paired, config=SimpleNamespace(rounds=rounds, max_fluency_cost=1.0),
                           strengths={c: 1.0 for c in rows if c != "rules_in_prompt"},
                           attack_success={c: {"rate": 0.5} for c in conditions}, rounds=[{"selection": selection}],
                           splits={}, seconds=0.0)


@pytest.mark.parametrize("rows, strength, cost, detected, false_positive", [
    ({"retrieved_round1": (-0.5, 0.01)}, 2.0, 0.3, True, False),  # the last round lowers ASR: detected
    ({"retrieved_round1": (-0.5, 0.01)}, 2.0, 1.5, False, False),  # ... but past the fluency bound: not a detection
    ({"retrieved_round1": (-0.5, 0.2)}, 2.0, 0.3, False, False),  # not significant after Holm
    ({"retrieved_round0": (-0.5, 0.01), "retrieved_round1": (-0.1, 0.5)}, 2.0, 0.3, False, False),  # only round 0
    ({"retrieved_round1": (0.5, 0.01)}, 2.0, 0.3, False, True),  # worse than no_rules: the wrong direction
    ({"all_vectors": (0.4, 0.03), "retrieved_round1": (-0.5, 0.01)}, 2.0, 0.3, True, True),
    ({"retrieved_round1": (-0.5, 0.01)}, 0.0, 0.0, True, None),  # strength 0 cannot count as a false positive
    ({"rules_in_prompt": (-0.5, 0.01), "retrieved_round1": (0.0, 1.0)}, 0.0, 0.0, False, None),  # not steered
])
def test_a_trial_is_judged_by_run_mentors_comparisons(rows, strength, cost, detected, false_positive):
    trial = sens.judge(fake(rows, strength=strength, cost=cost), strength)
    assert (trial.detected, trial.false_positive) == (detected, false_positive)


def test_results_json_has_the_documented_keys_and_unit(planted):
    _, _, out = planted
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["strength_unit"] == sens.UNIT
    assert data["settings"]["rule"]["keywords"] == ["~"] and data["settings"]["mentor"]["assessor"] == "checker"
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_topic_inputs_make_a_reply_without_the_topic_a_violation(tmp_path):
    queries_path, tree_path = sens.topic_inputs(sens.topic_rule("ocean"), tmp_path)
    queries = read_queries(queries_path)
    assert [q.query for q in queries] == RULE.queries() and len(queries) == 40 and {q.domain for q in queries} == {"ocean"}
    checker = KeywordChecker()
    assert checker(queries[:2], ["We sailed to the coral reef.", "I like trains."]) == [False, True]
    assert json.loads(tree_path.read_text())["domains"] == {"ocean": {"topic": ["Always talk about the ocean."]}}
    shipped = read_queries()  # the published risk queries have no required markers: the checker is unchanged there
    assert all(not q.required for q in shipped) and checker(shipped[:1], ["In conclusion, revolt."]) == [True]


def test_required_markers_must_be_strings(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "q", "domain": "d", "rubric": "r", "keywords": [], "required": [""]}) + "\n")
    with pytest.raises(ValueError, match="required"):
        read_queries(path)


def test_a_rule_without_keywords_is_refused():
    with pytest.raises(ValueError, match="no_dosage"):
        sens.MentorSensitivityConfig(BASE, rule="no_dosage")
    with pytest.raises(ValueError, match="bound"):
        sens.MentorSensitivityConfig(BASE, strengths=(0, 1000))


def test_cli_refuses_bad_values_before_loading_a_model(no_model, tmp_path, capsys):
    from metalens.cli import main

    base = ["sensitivity", "mentor", "--model", "tiny", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as err:
        main(base + ["--strengths", "0", "-1"])
    assert err.value.code == 2 and "--strengths" in capsys.readouterr().err
    assert main(base + ["--rule", "no_dosage"]) == 2 and "no_dosage" in capsys.readouterr().err
    assert main(base + ["--layers", "1", "2"]) == 2 and "--layers" in capsys.readouterr().err
    assert main(base + ["--max-per-domain", "2"]) == 2 and "too few" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_runs_and_a_rerun_resumes(monkeypatch, tmp_path, tiny_llama, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_llama)
    out = tmp_path / "cli"
    argv = ["sensitivity", "mentor", "--model", "tiny", "--layers", "1", "--out", str(out), "--rounds", "0",
            "--max-new-tokens", "2", "--strengths", "0", "1", "--seeds", "1"]
    assert main(argv) == 0
    assert "min detectable strength" in capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["settings"]["rule"]["name"] == "ocean"
    assert data["settings"]["mentor"]["rounds"] == 0 and data["settings"]["mentor"]["layer"] == 1
    monkeypatch.setattr(sens, "run_mentor", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) == 0
    assert main([*argv, "--max-new-tokens", "3"]) == 2 and "other settings" in capsys.readouterr().err  # more --seeds would extend
