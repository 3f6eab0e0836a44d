"""Calibration metrics, evaluation baselines and the adaptive sampler on known cases."""
import numpy as np
import pytest
import torch

from metalens.introspect import BinSpec
from metalens.introspect.heads.features import Positions
from metalens.introspect.evaluation.evaluate import rows_at_fraction
from metalens.introspect.evaluation.metrics import auroc, brier, ece, reliability
from metalens.introspect.sampling.sampler import PoolSample, adaptive, best_of_n, majority, matched_cost
from metalens.introspect.heads.train import shuffled


def test_metrics_on_known_predictions():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert brier(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert brier(y, np.full(4, 0.5)) == pytest.approx(0.25)
    # constant 0.5 on a balanced set is perfectly calibrated; constant 0.9 is off by 0.4
    assert ece(y, np.full(4, 0.5)) == pytest.approx(0.0)
    assert ece(y, np.full(4, 0.9)) == pytest.approx(0.4)
    rows = reliability(y, np.array([0.05, 0.15, 0.85, 0.95]), n_bins=2)
    assert rows == [{"bin": 0, "count": 2, "predicted": pytest.approx(0.1), "observed": 0.0},
                    {"bin": 1, "count": 2, "predicted": pytest.approx(0.9), "observed": 1.0}]


def _positions(lengths, rewards, spec):
    from metalens.introspect.heads.bins import prefix_labels

    parts = {k: [] for k in ("reward", "remaining", "bin", "task", "sample", "frac")}
    for s, (n, r) in enumerate(zip(lengths, rewards)):
        lab = prefix_labels(n, r, spec)
        for k in ("reward", "remaining", "bin"):
            parts[k].append(lab[k])
        parts["task"].append(torch.full((n,), s // 2))
        parts["sample"].append(torch.full((n,), s))
        parts["frac"].append(torch.arange(n) / n)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return Positions(torch.randn(len(cat["bin"]), 4), **cat)


def test_rows_at_fraction_pick_the_right_prefix():
    spec = BinSpec(edges=(1, 2, 4))
    pos = _positions([4, 2, 5], [1, 0, 1], spec)
    assert rows_at_fraction(pos, 0.0).tolist() == [0, 4, 6]
    assert pos.remaining[rows_at_fraction(pos, 1.0)].tolist() == [1, 1, 1]
    assert rows_at_fraction(pos, 0.5).tolist() == [2, 5, 8]


def test_shuffled_keeps_one_reward_per_sample_and_true_lengths():
    spec = BinSpec(edges=(1, 2, 4))
    pos = _positions([3, 4, 5, 2, 6, 3], [1, 0, 1, 0, 1, 0], spec)
    shuf = shuffled(pos, spec, seed=1)
    assert torch.equal(shuf.remaining, pos.remaining)
    for s in range(6):
        assert shuf.reward[pos.sample == s].unique().numel() == 1
    assert sorted(shuf.reward[rows_at_fraction(pos, 0)].tolist()) == [0, 0, 0, 1, 1, 1]
    assert torch.equal(shuf.bin, spec.joint_bin(shuf.reward, shuf.remaining))


def _sample(answer, reward, n, p):
    return PoolSample(answer, reward, np.full(n, p), np.arange(n, 0, -1).astype(float))


def test_majority_and_best_of_n_on_a_hand_made_pool():
    pool = [_sample(3, 0, 10, 0.2), _sample(5, 1, 8, 0.9), _sample(3, 0, 6, 0.1), _sample(5, 1, 4, 0.8)]
    assert majority(pool, 1) == (0, 10)
    assert majority(pool, 3) == (0, 24)  # 3 beats 5 two to one
    assert best_of_n(pool, 3) == (1, 24)  # the head picks the 0.9 sample
    assert majority(pool, 4)[1] == 28


def test_adaptive_prunes_hopeless_samples_and_spends_more_when_tokens_are_cheap():
    hopeless = [_sample(1, 0, 20, 0.01) for _ in range(4)]
    correct, tokens, _ = adaptive(hopeless, alpha=0.01, every=4)
    assert correct == 0 and tokens == 4  # pruned at the first checkpoint, no new sample started
    promising = [_sample(7, 1, 12, 0.6) for _ in range(4)]
    cheap = adaptive(promising, alpha=1e-4, every=4, initial=1)
    dear = adaptive(promising, alpha=0.02, every=4, initial=1)
    assert cheap[0] == 1 and cheap[1] > dear[1]


def test_matched_cost_interpolates_the_baseline():
    base = [{"tokens": 10.0, "accuracy": 0.2}, {"tokens": 30.0, "accuracy": 0.6}]
    rows = matched_cost([{"method": "a", "param": 0.1, "tokens": 20.0, "accuracy": 0.5}], base)
    assert rows[0]["majority_at_same_tokens"] == pytest.approx(0.4)
    assert rows[0]["difference"] == pytest.approx(0.1)


def test_paired_comparison_picks_a_majority_that_spends_at_least_as_much():
    from metalens.introspect.sampling.sampler import paired_vs_majority

    votes = [np.array([[0, 10], [0, 10], [1, 10], [0, 10]], float),  # majority@1: 10 tokens
             np.array([[1, 20], [0, 20], [1, 20], [0, 20]], float)]  # majority@2: 20 tokens
    runs = np.array([[1, 12], [1, 15], [1, 14], [0, 11]], float)  # 13 tokens on average
    res = paired_vs_majority(runs, votes, n_boot=200)
    assert res["majority_n"] == 2 and (res["wins"], res["ties"], res["losses"]) == (1, 3, 0) and res["p_sign"] == 1.0
    assert res["difference"] == pytest.approx(0.25)
    assert np.isnan(res["ci95"]).all() and res["ci_method"].startswith("not computed: 4 units < 10")  # 4 questions
    wide = paired_vs_majority(np.tile(runs, (3, 1)), [np.tile(v, (3, 1)) for v in votes], n_boot=200)
    assert wide["ci95"][0] >= 0 and wide["ci_method"].startswith("bootstrap over 12 groups")
    assert paired_vs_majority(runs * [1, 3], votes)["majority_n"] is None  # dearer than the whole pool


def test_shuffled_permutes_among_the_samples_present_when_ids_are_not_contiguous():
    spec = BinSpec(edges=(1, 2, 4))
    pos = _positions([3, 4, 5, 2, 6, 3, 4, 2], [1, 1, 0, 1, 1, 0, 1, 1], spec)
    # a fold's subset: samples 1, 3, 5, 7 (ids up to 7, four of them present, three correct)
    subset = pos.select(pos.sample % 2 == 1)
    for seed in range(20):
        shuf = shuffled(subset, spec, seed=seed)
        per_sample = shuf.reward[rows_at_fraction(subset, 0)]
        # a permutation keeps the positive rate: three of the four present samples stay correct
        assert sorted(per_sample.tolist()) == [0, 1, 1, 1]


def test_within_problem_auroc_is_chance_for_a_predictor_that_only_knows_difficulty():
    from metalens.introspect.evaluation.metrics import above_chance, within_problem_auroc

    rng = np.random.default_rng(0)
    problems = np.repeat(np.arange(60), 8)
    rate = np.repeat(rng.uniform(0, 1, 60), 8)  # each problem's difficulty
    y = (rng.random(len(problems)) < rate).astype(int)
    difficulty_only = rate + rng.normal(0, 1e-6, len(rate))  # the same score for every sample of a problem
    pooled = above_chance(y, difficulty_only, problems, n_boot=200)
    assert pooled["estimate"] > 0.2 and pooled["low"] > 0  # pooled, difficulty looks like knowledge
    within = within_problem_auroc(y, difficulty_only, problems, n_boot=200)
    assert within["low"] < 0.5 < within["high"] and 0 < within["n_mixed"] < 60 == within["n_problems"]
    knows = within_problem_auroc(y, y + rng.normal(0, 0.3, len(y)), problems, n_boot=200)
    assert knows["low"] > 0.8  # a predictor of the sample's own outcome is read within problems


def test_best_of_n_comparisons_say_how_many_were_made_and_are_holm_adjusted():
    from metalens.introspect.sampling.sampler import pareto

    rng = np.random.default_rng(0)
    pools = [[_sample(int(rng.integers(0, 3)), int(rng.random() < 0.3), 4, float(rng.random())) for _ in range(4)]
             for _ in range(30)]
    out = pareto(pools, alphas=[0.0, 0.01])
    tested = [r for r in out["paired"] if r.get("majority_n")]
    assert out["n_comparisons"] == len(tested) >= 3  # best-of-2..4 at least
    for r in tested:
        assert r["n_comparisons"] == len(tested) and r["p_holm"] >= r["p"] - 1e-12


def test_within_problem_auroc_over_five_mixed_problems_reports_no_bounds_and_says_why():
    from metalens.introspect.evaluation.metrics import within_problem_auroc

    problems = np.repeat(np.arange(5), 4)
    y = np.tile([1, 0, 1, 0], 5)
    out = within_problem_auroc(y, y + 0.1, problems, n_boot=100)
    assert out["estimate"] == 1.0 and out["n_mixed"] == 5 and np.isnan([out["low"], out["high"]]).all()
    assert out["method"] == "not computed: 5 units < 10 for a percentile bootstrap"
