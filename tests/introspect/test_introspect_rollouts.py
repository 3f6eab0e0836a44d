"""Rollout generation and the resumable store: a killed run is detected and resumed."""
import json

import pytest

from metalens.introspect import Question, generate_rollouts, load_rollouts
from metalens.introspect.rollouts.store import grade, solve_rates

QUESTIONS = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1 + i % 2) for i in range(4)]


def _gen(model, out, questions=QUESTIONS):
    return generate_rollouts(model, questions, out, n_samples=2, max_new_tokens=5, seed=3, prefix="")


def test_rollouts_are_graded_and_complete(tiny_gemma, tmp_path):
    records = load_rollouts(_gen(tiny_gemma, tmp_path / "r"))
    assert [r["task_index"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert len(r["completions"]) == 2 and all(1 <= len(c) <= 5 for c in r["completions"])
        assert r["rewards"] == [int(grade(Question(r["prompt"], r["answer"]), t)) for t in r["texts"]]
    assert set(solve_rates(records)) == {1, 2}


def test_grade_reads_the_answer_after_answer_is():
    task = Question("Q: What is 2 + 3?\nA:", 5)
    assert grade(task, " 2 + 3 = 5. The answer is 5.") == 1
    assert grade(task, " 2 + 3 = 6. The answer is 6.") == 0


def test_killed_run_is_detected_then_resumed_identically(tiny_gemma, tmp_path):
    full = load_rollouts(_gen(tiny_gemma, tmp_path / "full"))
    out = tmp_path / "killed"
    _gen(tiny_gemma, out)
    # Simulate a run killed while writing task 2: manifest unfinished, a torn last line, task 3 missing.
    lines = (out / "rollouts.jsonl").read_text().splitlines(keepends=True)
    (out / "rollouts.jsonl").write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match="unfinished"):
        load_rollouts(out)
    _gen(tiny_gemma, out)  # the same command resumes
    assert load_rollouts(out) == full


def test_tampered_rollouts_are_refused(tiny_gemma, tmp_path):
    out = _gen(tiny_gemma, tmp_path / "r")
    with open(out / "rollouts.jsonl", "a") as handle:
        handle.write("{}\n")
    with pytest.raises(ValueError, match="checksum"):
        load_rollouts(out)


def test_other_settings_in_the_same_directory_raise(tiny_gemma, tmp_path):
    _gen(tiny_gemma, tmp_path / "r")
    with pytest.raises(ValueError, match="other settings"):
        generate_rollouts(tiny_gemma, QUESTIONS, tmp_path / "r", n_samples=3, max_new_tokens=5, seed=3, prefix="")


def test_a_store_of_the_older_sampler_is_refused_with_the_way_out(tiny_gemma, tmp_path):
    out = _gen(tiny_gemma, tmp_path / "r")
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "format": "metalens.introspect.rollouts.store/1"}))
    with pytest.raises(ValueError, match="older format.*--rollouts"):
        _gen(tiny_gemma, out)  # finished: reuse it as it is, or sample again
    assert len(load_rollouts(out)) == 4  # still readable as it is
    (out / "manifest.json").write_text(json.dumps({**manifest, "format": "metalens.introspect.rollouts.store/1",
                                                   "complete": False}))
    with pytest.raises(ValueError, match="other settings"):
        _gen(tiny_gemma, out)  # unfinished: cannot be resumed draw for draw


def test_a_store_graded_by_an_older_grader_is_regraded_on_load(tiny_gemma, tmp_path):
    from metalens.store import sha256 as sha256_text

    out = _gen(tiny_gemma, tmp_path / "r")
    lines = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    # The old grader read the first number: "1 + 1 = 3" graded right for "What is 0 + 1?" (answer 1).
    lines[0]["texts"] = [" 1 + 1 = 3", " The answer is 1."]
    lines[0]["rewards"] = [1, 0]
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "sha256": sha256_text(out / "rollouts.jsonl")}))
    first = load_rollouts(out)[0]
    assert first["rewards"] == [0, 1] and first["regraded"] == 2
