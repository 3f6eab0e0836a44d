"""The steering verbs' boundary (issue #27): every bad number, file, artifact or --out is one line, exit 2,
before the model loads and before anything is written; a result that would be NaN is an error."""
from __future__ import annotations

import json
import math

import pytest
import torch

import metalens
from metalens.cli import main
from metalens.options import mark_out
from metalens.steering import SteerConfig, SteeringVector, run_steer, train_steering_vector
from metalens.steering.io import write_gguf
from metalens.steering.mentor import MentorConfig, run_mentor
from metalens.steering.rules import workflow as rules_workflow
from metalens.steering.rules.library import read_pairs

PROMPTS = ["Tell me about your day.", "What is your job like?", "Describe your town.", "Give me advice.",
           "Tell me a story.", "What are you reading?"]


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err


def saved_vector(tiny_gemma, path):
    vec = train_steering_vector(tiny_gemma, ["aaa bbb", "aab"], ["ccc ddd", "ccd"], layers=[1])
    return vec.save(path)


BAD_NUMBERS = [
    (["steer", "--rule", "ocean", "--strengths", "1e30"], "--strengths"),
    (["steer", "--rule", "ocean", "--strengths", "nan"], "--strengths"),
    (["steer", "--rule", "ocean", "--strengths", "-101"], "--strengths"),
    (["steer", "--rule", "ocean", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["steer", "--rule", "ocean", "--n-select", "0"], "--n-select"),
    (["steer", "--rule", "ocean", "--rounds", "-1"], "--rounds"),
    (["steer", "--rule", "ocean", "--layers", "-1"], "--layers"),
    (["steer-ab", "--data", "{data}", "--max-items", "0"], "--max-items"),
    (["steer-ab", "--data", "{data}", "--strengths", "inf"], "--strengths"),
    (["steer-ab", "--data", "{data}", "--batch-size", "0"], "--batch-size"),
    (["steer-ab", "--data", "{data}", "--seed", "-3"], "--seed"),
    (["mentor", "--top-k", "0"], "--top-k"),
    (["mentor", "--max-per-domain", "0"], "--max-per-domain"),
    (["mentor", "--strengths", "1e30"], "--strengths"),
    (["mentor", "--reflect-tokens", "-1"], "--reflect-tokens"),
]


@pytest.mark.parametrize("argv, flag", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_a_bad_number_is_one_line_naming_its_flag(argv, flag, tmp_path, capsys, no_model):
    data = tmp_path / "items.jsonl"
    data.write_text(json.dumps({"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": " (A)",
                                "answer_not_matching_behavior": " (B)"}) + "\n")
    argv = [a.replace("{data}", str(data)) for a in argv] + ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_mentor_refuses_two_layers(tmp_path, capsys, no_model):
    code, err = run(["mentor", "--layers", "3", "6", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "one block" in err and not (tmp_path / "out").exists()


def test_a_truncated_rule_tree_is_refused_before_anything_is_written(tmp_path, capsys, no_model):
    tree = tmp_path / "tree.json"
    tree.write_text('{"domains": {"finance": {"advice": ["Do not promise retur')
    code, err = run(["mentor", "--tree", str(tree), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{tree}:1" in err and not (tmp_path / "out").exists()


def test_a_rule_tree_of_the_wrong_shape_names_the_entry(tmp_path, capsys, no_model):
    tree = tmp_path / "tree.json"
    tree.write_text(json.dumps({"domains": {"finance": {"advice": [3, "ok"]}}}))
    code, err = run(["mentor", "--tree", str(tree), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and str(tree) in err and "finance/advice" in err and not (tmp_path / "out").exists()


def test_a_queries_file_with_non_string_keywords_names_file_and_line(tmp_path, capsys, no_model):
    queries = tmp_path / "q.jsonl"
    good = dict(query="q1", domain="finance", rubric="r", keywords=["yes"])
    queries.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "query": "q2", "keywords": [1, 2]}) + "\n")
    code, err = run(["mentor", "--queries", str(queries), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{queries}:3" in err and "keywords" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("record", [{"positive": 3, "negative": "b"}, {"positive": "a", "negative": ["b"]},
                                    {"positive": "a", "negative": "b", "prompt": {"x": 1}}])
def test_a_pairs_file_with_non_string_values_names_file_and_line(record, tmp_path, capsys, no_model):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"positive": "a", "negative": "b"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=f"{pairs}:2"):
        read_pairs(pairs)
    code, err = run(["steer", "--rule", "ocean", "--pairs", str(pairs), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{pairs}:2" in err and not (tmp_path / "out").exists()


def test_out_naming_a_file_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    (tmp_path / "taken").write_text("mine")
    for argv in (["steer", "--rule", "ocean"], ["mentor"]):
        with pytest.raises(SystemExit) as exit:
            main(argv + ["--out", str(tmp_path / "taken")])
        assert exit.value.code == 2 and "--out" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("verb", ["steer", "mentor"])
def test_out_holding_another_verbs_run_is_refused_before_the_model_loads(verb, tmp_path, capsys, no_model):
    mark_out(tmp_path / "run", "probe")
    extra = ["--rule", "ocean"] if verb == "steer" else []
    code, err = run([verb, *extra, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "'probe' run" in err and sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "metalens-run.json"]


def test_a_vector_whose_tensors_disagree_with_its_json_is_refused_naming_the_file(tiny_gemma, tmp_path, capsys,
                                                                                  no_model):
    path = saved_vector(tiny_gemma, tmp_path / "vec")
    meta = json.loads((path / "steering_vector.json").read_text())
    (path / "steering_vector.json").write_text(json.dumps({**meta, "d_model": 32}))
    with pytest.raises(ValueError, match="steering_vector"):
        SteeringVector.load(path)
    code, err = run(["steer", "--rule", "ocean", "--vector", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and str(path) in err and not (tmp_path / "out").exists()


def test_a_vector_holding_nan_is_refused_on_load_and_on_apply(tiny_gemma, tmp_path):
    vec = train_steering_vector(tiny_gemma, ["aaa bbb", "aab"], ["ccc ddd", "ccd"], layers=[1])
    vec.directions[1][3] = math.nan
    vec.save(tmp_path / "nan")
    with pytest.raises(ValueError, match=str(tmp_path / "nan")):
        SteeringVector.load(tmp_path / "nan")
    with pytest.raises(ValueError, match="NaN"):
        vec.edits(tiny_gemma, 1.0)


def test_a_vector_of_another_width_than_the_model_is_refused_naming_the_file(tiny_gemma, tmp_path, capsys,
                                                                               monkeypatch):
    vec = train_steering_vector(tiny_gemma, ["aaa bbb", "aab"], ["ccc ddd", "ccd"], layers=[1])
    wide = SteeringVector({1: torch.ones(128)}, model_name=tiny_gemma.name, d_model=128)
    wide.save(tmp_path / "wide")
    with pytest.raises(ValueError, match=f"{tmp_path / 'wide'}.*d_model"):
        SteeringVector.load(tmp_path / "wide", tiny_gemma)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **kw: tiny_gemma)
    code, err = run(["steer", "--rule", "ocean", "--vector", str(tmp_path / "wide"), "--out", str(tmp_path / "out")],
                    capsys)
    assert code == 2 and str(tmp_path / "wide") in err
    wrong = {1: vec.directions[1][:32]}  # a direction whose shape disagrees with the vector's own d_model
    with pytest.raises(ValueError, match="shape"):
        SteeringVector(wrong, model_name=tiny_gemma.name, d_model=64).edits(tiny_gemma)


def test_a_gguf_holding_nan_is_refused_naming_the_file(tmp_path):
    path = write_gguf({1: torch.tensor([1.0, math.nan, 0.0])}, tmp_path / "v.gguf", "gemma3")
    with pytest.raises(ValueError, match=f"{path}.*NaN"):
        SteeringVector.from_gguf(path)


def test_strengths_out_of_bounds_are_refused_by_every_config():
    from metalens.steering import MentorConfig, SteerABConfig

    for make in (lambda s: SteerConfig("ocean", strengths=s), lambda s: SteerABConfig("d.jsonl", strengths=s),
                 lambda s: MentorConfig(strengths=s)):
        with pytest.raises(ValueError, match="outside"):
            make((1.0, 1e30))
        with pytest.raises(ValueError, match="finite"):
            make((math.nan,))


def test_max_items_zero_is_refused_not_read_as_every_item():
    from metalens.steering import SteerABConfig

    with pytest.raises(ValueError, match="max_items"):
        SteerABConfig("d.jsonl", max_items=0)


def test_a_nan_fluency_cost_is_an_error_not_a_number(tiny_gemma, monkeypatch):
    real = rules_workflow.evaluate

    def broken(model, prompts, checker, steer=None, *args, **kwargs):
        result = real(model, prompts, checker, steer, *args, **kwargs)
        if steer is not None and "base_nll" in kwargs and len(prompts) == 3:  # the steered test-prompt score
            result.update(nll=math.nan, fluency_cost=math.nan)
        return result

    monkeypatch.setattr(rules_workflow, "evaluate", broken)
    config = SteerConfig("ocean", prompts=PROMPTS, layers=[1], strengths=(2.0,), max_new_tokens=3, n_select=3)
    with pytest.raises(ValueError, match="NaN"):
        run_steer(tiny_gemma, config, progress=False)


def test_a_mentor_run_that_never_finished_round_0_does_not_block_a_corrected_config(tiny_gemma, tmp_path,
                                                                                     monkeypatch):
    from metalens.steering.mentor import MentorRun

    queries = tmp_path / "q.jsonl"
    metalens.write_jsonl(queries, [dict(query=f"{d} question {i}", domain=d, rubric="must not say yes",
                                        keywords=["yes"]) for d in ("education", "finance") for i in range(5)])
    config = MentorConfig(queries=str(queries), rounds=0, layer=1, max_new_tokens=2, assessor="none",
                          strengths=(1.0,), retrieval="bow")

    def fail(self, *args, **kwargs):
        raise ValueError("broke in round 0")

    monkeypatch.setattr(MentorRun, "select", fail)
    with pytest.raises(ValueError, match="round 0"):
        run_mentor(tiny_gemma, config, out=tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "mentor_config.json").exists()
    monkeypatch.undo()
    corrected = MentorConfig(**{**config.__dict__, "strengths": (2.0,)})
    result = run_mentor(tiny_gemma, corrected, out=tmp_path / "out", progress=False)
    assert result.strengths["retrieved_round0"] == 2.0


def test_a_mentor_strength_that_empties_every_response_is_an_error(tiny_gemma):
    from metalens.steering.mentor import MentorRun

    config = MentorConfig(rounds=0, layer=1, max_new_tokens=2, assessor="none", strengths=(1.0, 2.0),
                          retrieval="bow", max_per_domain=5)
    run = MentorRun(tiny_gemma, config, None, progress=False)
    with pytest.raises(ValueError, match="strength 2 .*NaN"):
        run.fluency_cost([""] * len(run.texts("validation")), 2.0)
