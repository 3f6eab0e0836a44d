"""The data regime: word problems, min-p sampling, batched rollouts that resume exactly, transfer."""
import json

import pytest

from metalens.testing import tiny_model
from metalens.tasks.arithmetic import extract_answer
from metalens.tasks.words import LEVELS, make_word_problems
from metalens.introspect import Question, generate_rollouts, load_rollouts
from metalens.introspect.rollouts.store import few_shot_prefix, task_questions


def test_word_problems_have_worked_solutions_the_arithmetic_grader_reads():
    problems = make_word_problems(25, levels=tuple(LEVELS), seed=0)
    assert make_word_problems(25, levels=tuple(LEVELS), seed=0) == problems
    assert len({p.text for p in problems}) == 25 and {p.level for p in problems} == set(LEVELS)
    for p in problems:
        assert extract_answer(p.solution) == p.answer  # graded by the same grader
        assert len(p.steps) == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}[p.level]
        assert p.prompt.startswith("Q: ") and p.prompt.endswith("\nA:")
        # each worked step is true arithmetic
        for step in p.steps:
            lhs, rhs = step.split(" = ")
            assert eval(lhs) == int(rhs)  # noqa: S307 - our own generated digits and operators
    shots = few_shot_prefix(task="words")
    assert shots.count("The answer is") == 3 and "What is" not in shots
    assert task_questions("words", 3, (1,), 0)[0].prompt == make_word_problems(3, (1,), 0)[0].prompt
    with pytest.raises(ValueError, match="Unknown task"):
        task_questions("poems", 3)


def test_batched_min_p_rollouts_resume_to_what_an_uninterrupted_run_writes(tmp_path):
    model = tiny_model("gemma3", seed=8)
    questions = [Question(f"Q: What is {i} + 2?\nA:", i + 2, level=1 + i % 3) for i in range(7)]
    settings = dict(n_samples=2, max_new_tokens=6, temperature=1.0, seed=3, prefix="", min_p=0.1, batch_questions=3)
    generate_rollouts(model, questions, tmp_path / "a", **settings)
    whole = load_rollouts(tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["min_p"] == 0.1 and manifest["batch_questions"] == 3
    # a run killed after the first chunk and one line of the second, mid-write of the next line
    generate_rollouts(model, questions, tmp_path / "b", **settings)
    lines = (tmp_path / "b" / "rollouts.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "b" / "rollouts.jsonl").write_text("".join(lines[:4]) + lines[4][:20])
    manifest_b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({**manifest_b, "complete": False}))
    generate_rollouts(model, questions, tmp_path / "b", **settings)
    assert load_rollouts(tmp_path / "b") == whole
    with pytest.raises(ValueError, match="other settings"):
        generate_rollouts(model, questions, tmp_path / "a", **{**settings, "min_p": 0.2})


def test_min_p_drops_tokens_below_its_share_of_the_top_token(tmp_path):
    from metalens.introspect.rollouts.decode import sample

    model = tiny_model("gemma3", seed=8)
    prompt = model.tokenizer("Q: 1 + 1?\nA:")["input_ids"]
    loose = sample(model, prompt, 24, max_new_tokens=1, temperature=1.0, stop_strings=(), seed=0)
    strict = sample(model, prompt, 24, max_new_tokens=1, temperature=1.0, stop_strings=(), seed=0, min_p=0.9)
    import torch

    probs = model.hf(input_ids=torch.tensor([prompt])).logits[0, -1].softmax(-1)
    allowed = set((probs >= 0.9 * probs.max()).nonzero()[:, 0].tolist())
    assert {t[0] for t in strict.tokens} <= allowed
    assert len({t[0] for t in loose.tokens}) > len(allowed), "the test must be able to fail"


def test_a_head_trained_on_arithmetic_is_scored_on_every_word_problem(tmp_path, monkeypatch):
    import metalens
    from metalens.cli import main
    from test_introspect_full import _planted_store, plant_rewards

    model = tiny_model("gemma3", seed=9)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    _planted_store(model, tmp_path / "arith", n=8)
    assert main(["introspect", "rollouts", "--task", "words", "--out", str(tmp_path / "words"), "--n-tasks", "5",
                 "--levels", "1", "2", "--n-samples", "2", "--max-new-tokens", "4", "--min-p", "0.1",
                 "--batch-questions", "2"]) == 0
    plant_rewards(tmp_path / "words")  # both rewards among the scored questions: an AUROC is defined
    words = load_rollouts(tmp_path / "words")
    assert len(words) == 5 and words[0]["prompt"].startswith("Q: ") and "What is" not in words[0]["prompt"]
    assert main(["introspect", "train", "--out", str(tmp_path / "run"), "--rollouts", str(tmp_path / "arith"),
                 "--steps", "30", "--test-fraction", "0.5"]) == 0
    assert main(["introspect", "eval", "--train", str(tmp_path / "run"), "--out", str(tmp_path / "ev"),
                 "--rollouts", str(tmp_path / "words"), "--no-verbal", "--fractions", "0", "1",
                 "--n-shuffles", "1"]) == 0
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert result["transfer"] == str(tmp_path / "words")
    assert result["n_test_samples"] == sum(len([c for c in r["completions"] if c]) for r in words)
    assert set(result["by_level"]) == {"1", "2"}
    assert 0 <= result["all_positions"]["head"]["auroc"] <= 1
    from metalens.introspect import EvalConfig, run_eval

    with pytest.raises(ValueError, match="not transfer"):
        run_eval(model, EvalConfig(tmp_path / "run", rollouts=tmp_path / "words", cv=2), progress=False)


def test_train_config_refuses_a_level_its_generator_lacks_before_a_model_loads():
    from metalens.introspect.workflows.train import TrainConfig

    assert TrainConfig(levels=(0, 1)).levels == (0, 1)  # arithmetic has an easier level 0
    with pytest.raises(ValueError, match=r"the words generator has levels \[1, 2, 3, 4, 5\]"):
        TrainConfig(task="words", levels=(0, 1))
