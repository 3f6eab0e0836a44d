"""Prompt pairs from the models' own solution openings (post = clean, base = corrupted) and their KL metric."""
import pytest
import torch

import metalens
from metalens.circuits import EmergentConfig, run_emergent_heads
from metalens.circuits.compare import task_metric
from metalens.circuits.metrics import prepare
from metalens.circuits.own_pairs import model_divergence, own_solution_task
from metalens.tasks.arithmetic import make_problems
from metalens.testing import tiny_model

PROBLEMS = make_problems(10, seed=4)


@pytest.fixture(scope="module")
def models():
    return tiny_model("gemma3", seed=0), tiny_model("gemma3", seed=1)


@pytest.fixture(scope="module")
def task(models):
    base, post = models
    return own_solution_task(base, post, PROBLEMS, n_tokens=6)


def _problem_of(text):
    return next(p for p in PROBLEMS if text.startswith(p.prompt))


def test_own_pairs_have_equal_token_lengths_and_no_identical_pair(models, task):
    base, _ = models
    assert len(task) >= 3 and task.metric == "kl"
    n = lambda text: len(base.tokenizer(text)["input_ids"])
    assert all(n(c) == n(x) for c, x in zip(task.clean, task.corrupted))
    assert all(c != x for c, x in zip(task.clean, task.corrupted))
    assert all(n(c) - n(_problem_of(c).prompt) <= 6 for c in task.clean)
    prepare(base, task)  # refuses unequal lengths


def test_clean_continues_with_the_post_models_solution_and_corrupted_with_the_base_models(models, task):
    base, post = models
    for clean, corrupted in zip(task.clean, task.corrupted):
        problem = _problem_of(clean)
        assert corrupted.startswith(problem.prompt)
        post_text = metalens.generate(post, [problem.prompt], max_new_tokens=8).texts[0]
        base_text = metalens.generate(base, [problem.prompt], max_new_tokens=8).texts[0]
        assert post_text.startswith(clean[len(problem.prompt):])
        assert base_text.startswith(corrupted[len(problem.prompt):])
        assert not base_text.startswith(clean[len(problem.prompt):])


def test_the_same_model_twice_leaves_no_pair(models):
    base, _ = models
    with pytest.warns(UserWarning, match="identical openings"), pytest.raises(ValueError, match="same model"):
        own_solution_task(base, base, PROBLEMS[:4], n_tokens=4)


def test_kl_metric_is_zero_for_the_unedited_model_and_divergence_zero_for_the_same_model(models, task):
    base, post = models
    assert task_metric(post, task)["task_metric"] == pytest.approx(0, abs=1e-6)
    assert torch.allclose(model_divergence(post, post, task), torch.zeros(len(task)), atol=1e-6)
    assert (model_divergence(post, base, task) > 0).all()


def test_logit_diff_option_scores_the_post_models_next_token_against_the_base_models(models):
    base, post = models
    task = own_solution_task(base, post, PROBLEMS, n_tokens=6, metric="logit_diff")
    assert task.metric == "logit_diff" and all(len(a) and len(w) for a, w in zip(task.answers, task.wrong))
    batch = prepare(post, task)
    # post's own greedy next token after its opening is the answer, so its logit diff is >= 0
    assert (task_metric(post, task)["per_pair"] >= torch.zeros(len(task)).numpy()).all()
    assert batch.answer.shape == (len(task),)


def test_emergent_heads_run_on_own_pairs_with_the_kl_metric(models, tmp_path):
    base, post = models
    cfg = EmergentConfig(pairs="own", n=3, n_test=3, n_edges=15, ig_steps=1, n_problems=0, n_random=1, n_boot=0,
                         own_tokens=6)
    result = run_emergent_heads(base, post, cfg, out=tmp_path, progress=False)
    assert result.metadata["metric"] == "kl" and result.metadata["pairs"]["source"] == "own"
    assert result.metadata["pairs"]["divergence_post_base"] > 0
    assert result.metadata["n_pick"] + result.metadata["n_test"] == 6


def test_emergent_config_refuses_an_unknown_pair_source():
    with pytest.raises(ValueError, match="'task'.*'own'"):
        EmergentConfig(pairs="mine")


def test_the_problem_pool_shrinks_to_what_the_levels_hold():
    from metalens.circuits.emergent import problem_pool
    from metalens.tasks.arithmetic import make_problems

    with pytest.raises(ValueError, match="ask for fewer"):
        make_problems(792, levels=(1, 2, 3), seed=1)  # level 1 has 81 one-digit sums; a third of 792 is 264
    pool = problem_pool(792, (1, 2, 3), seed=1)  # 24 pairs asked for with 32 problems each: what failed a run
    assert 100 <= len(pool) <= 792 and len({p.question for p in pool}) == len(pool)
    assert pool == make_problems(len(pool), levels=(1, 2, 3), seed=1)  # the same seeded draw, only shorter
