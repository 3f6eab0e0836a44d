"""The replayed samplers against oracle head quality: the oracle's readings have a trained head's shape,
quality 1 reads the truth and beats majority voting where the truth separates samples, quality 0 reads
nothing (a head that reads the base rate everywhere), and the oracle trials and the trained head go
through the same replay with the same rule."""
import json

import numpy as np
import pytest
import torch

import metalens
import metalens.introspect.sampler_sensitivity as sens
from metalens.cli import main
from metalens.introspect import Question, SampleConfig, TrainConfig, generate_rollouts, run_sample, run_train
from metalens.introspect.sampling.oracle import oracle_pools, reading_quality, reordered
from metalens.introspect.sampling.sampler import PoolSample
from metalens.sensitivity import SensitivityResult
from metalens.store import sha256
from metalens.testing import tiny_model
from spying import spy_on


def _sample(answer, reward, n, p=0.3):
    return PoolSample(answer, reward, np.full(n, p, dtype=np.float32), np.arange(n, 0, -1).astype(np.float32))


def _separable(n_questions=20, seed=0):
    """Pools where majority voting is wrong but a right sample exists: per question 2 right samples
    (answer 100 + t), 3 wrong ones agreeing on 0 and one wrong 1; plus two questions no one solves and
    two everyone solves. Lengths vary at random, independent of correctness."""
    rng = np.random.default_rng(seed)
    pools = []
    for t in range(n_questions):
        outcomes = [(100 + t, 1)] * 2 + [(0, 0)] * 3 + [(1, 0)]
        pools.append([_sample(a, r, int(rng.integers(6, 16))) for a, r in outcomes])
    pools += [[_sample(0, 0, 10) for _ in range(6)] for _ in range(2)]
    pools += [[_sample(7, 1, 10) for _ in range(6)] for _ in range(2)]
    return pools


CONFIG = sens.OracleSamplerSensitivityConfig(train="unused", strengths=(0, 1), seeds=2)


def test_oracle_readings_keep_the_samples_and_have_a_heads_shape():
    pools = _separable(4)
    for length in ("head", "true"):
        read = oracle_pools(pools, 0.5, seed=3, length=length)
        for pool, new in zip(pools, read):
            assert [(s.answer, s.reward, s.n_tokens) for s in pool] == [(s.answer, s.reward, s.n_tokens) for s in new]
            assert all(s.p_correct.dtype == np.float32 and s.p_correct.shape == (s.n_tokens,) for s in new)
            assert len({float(s.p_correct[0]) for s in new}) == 1  # position 0 reads the question alone
            for old, s in zip(pool, new):
                assert np.unique(s.p_correct[1:]).size == 1  # one reading per sample after the prompt
                if length == "head":
                    assert np.array_equal(s.expected_remaining, old.expected_remaining)
                else:
                    assert np.array_equal(s.expected_remaining[1:], np.arange(s.n_tokens - 1, 0, -1))
                    assert s.expected_remaining[0] == pytest.approx(np.mean([x.n_tokens for x in pool]))
    assert oracle_pools(pools, 0.5, 3)[0][0].p_correct[1] == oracle_pools(pools, 0.5, 3)[0][0].p_correct[1]
    with pytest.raises(ValueError, match="1.5"):
        oracle_pools(pools, 1.5, 0)


def test_quality_1_reads_the_truth_and_the_realised_auroc_is_half_plus_half_the_quality():
    rng = np.random.default_rng(1)
    big = [[_sample(0, int(rng.random() < rate), 5) for _ in range(8)] for rate in rng.uniform(0.1, 0.9, 600)]
    truth = oracle_pools(big, 1.0, seed=0)
    assert all(s.p_correct[-1] == s.reward for pool in truth for s in pool)
    assert all(s.p_correct[0] == pytest.approx(np.mean([x.reward for x in pool])) for pool in truth for s in pool)
    for q in (0.2, 0.6):
        quality = reading_quality(oracle_pools(big, q, seed=2))
        assert quality["auroc_final"] == pytest.approx(0.5 + q / 2, abs=0.015)
        assert quality["auroc_within"] == pytest.approx(0.5 + q / 2, abs=0.03)  # within questions too


def test_quality_0_reads_the_base_rate_everywhere_whatever_the_truth():
    pools = _separable(6)
    rho = np.mean([s.reward for pool in pools for s in pool])
    blank = oracle_pools(pools, 0.0, seed=5)
    assert all(np.allclose(s.p_correct, rho) for pool in blank for s in pool)
    rewards = np.random.default_rng(0).permutation([s.reward for pool in pools for s in pool])  # another truth
    it = iter(rewards.tolist())
    other = [[PoolSample(s.answer, next(it), s.p_correct, s.expected_remaining) for s in pool] for pool in pools]
    for a, b in zip(blank, oracle_pools(other, 0.0, seed=5)):
        assert all(np.array_equal(x.p_correct, y.p_correct) for x, y in zip(a, b))
    # a quality-0 trial is the replay of a head that reads the base rate everywhere
    uninformed = [[_sample(s.answer, s.reward, s.n_tokens, rho) for s in pool] for pool in reordered(pools, 1)]
    trial = sens.oracle_trial(pools, CONFIG, 0.0, 1)
    assert {k: v for k, v in trial.details.items() if k != "reading"} == sens.replay(uninformed, CONFIG)
    assert trial.details["reading"]["auroc_final"] == 0.5


def test_quality_1_beats_majority_voting_where_it_is_wrong_and_quality_0_does_not():
    pools = _separable()
    for seed in (0, 1):
        truth = sens.oracle_trial(pools, CONFIG, 1.0, seed)
        assert truth.detected and truth.false_positive is None
        assert truth.details["best"]["wins"] >= 10 and truth.details["best"]["losses"] == 0
        blank = sens.oracle_trial(pools, CONFIG, 0.0, seed)
        assert not blank.detected and blank.false_positive is False
    assert not sens.oracle_trial(pools, sens.OracleSamplerSensitivityConfig("unused", sampler="best-of-n"), 0.0,
                                 0).detected


def test_pools_no_reading_could_improve_are_refused():
    solved_or_not = _separable(0)  # only all-wrong and all-right questions
    with pytest.raises(ValueError, match="both right and wrong"):
        sens.check_pools(solved_or_not)
    with pytest.raises(ValueError, match="sampler="):
        sens.OracleSamplerSensitivityConfig("unused", sampler="utility")


def test_the_sweep_counts_false_positives_at_quality_0_only_and_places_the_trained_head(tmp_path):
    pools = _separable()
    heads = [[_sample(s.answer, s.reward, s.n_tokens, 0.5 + 0.3 * (2 * s.reward - 1)) for s in pool]
             for pool in pools]  # a head that reads correctness well (AUROC 1)
    result = sens.sweep_pools(heads, CONFIG, out=tmp_path, progress=False)
    assert [r["detected_share"] for r in result.detection] == [0.0, 1.0]
    assert result.false_positive_n == 2 and result.false_positive_share == 0.0 and result.min_detectable_strength == 1
    placed = SensitivityResult.load(tmp_path).settings["trained_head"]
    assert placed["reading"]["auroc_final"] == 1.0 and placed["published_order"]["detected"]
    assert placed["n_seeds"] == 2 and placed["detected_share"] == 1.0
    with pytest.raises(ValueError, match="other settings"):
        sens.sweep_pools(heads, sens.OracleSamplerSensitivityConfig("unused", strengths=(0, 1), seeds=2,
                                                                    sampler="best-of-n"), out=tmp_path, progress=False)


def _mixed_store(model, out, n):
    """A finished store of `n` questions x 3 samples whose texts are planted: sample j of question i is
    right when (i + j) % 3 == 0, so most questions hold right and wrong samples."""
    questions = [Question(f"Q: What is {i} + 1?\nA:", i + 1, level=1) for i in range(n)]
    generate_rollouts(model, questions, out, n_samples=3, max_new_tokens=4, seed=0, prefix="")
    records = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    for r in records:
        i = r["task_index"]
        r["texts"] = [f" {r['answer'] if (i + j) % 3 == 0 else -1}" for j in range(len(r["texts"]))]
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sha256"] = sha256(out / "rollouts.jsonl")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_oracle_trials_and_the_trained_head_go_through_one_replay_the_published_one(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    model = tiny_model("gemma3", seed=4)
    store = _mixed_store(model, tmp_path / "store", 12)
    trained = run_train(model, TrainConfig(rollouts=str(store), steps=20, test_fraction=0.5), out=tmp_path / "run",
                        progress=False)
    published = run_sample(model, SampleConfig(trained, cv=2), progress=False)
    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: model)
    with spy_on(sens, "replay") as calls:
        assert main(["sensitivity", "ziprc-sampler", "--train", str(tmp_path / "run"), "--cv", "2", "--strengths",
                     "0", "1", "--seeds", "1", "--out", str(tmp_path / "sens")]) == 0
    result = SensitivityResult.load(tmp_path / "sens")
    assert len(calls) == 2 + 2  # two oracle trials; the trained head in its stored order and in seed 0's
    assert all(config is calls[0][0] for config, _ in calls) and calls[0][0].sampler == "prune-only"
    assert {r["detected"] for r in result.runs} == {c[1]["detected"] for c in calls[:2]}
    placed = result.settings["trained_head"]["published_order"]
    # the trained head's replay is the published one: run_sample's out-of-fold comparison, judged by the rule
    expected = json.loads(json.dumps(sens.verdict(published.cv, "prune-only"), default=float))
    assert json.loads(json.dumps(placed)) == expected


@pytest.mark.parametrize("flag,value", [("--cv", "1"), ("--strengths", "1.5"), ("--seeds", "0"), ("--every", "0"),
                                        ("--beta", "nan"), ("--sampler", "utility"), ("--length", "zero"),
                                        ("--train", "{missing}")])
def test_a_bad_value_is_one_line_naming_its_flag_before_the_model_loads(flag, value, tmp_path, capsys, no_model):
    run = tmp_path / "run"
    run.mkdir()
    argv = {"--train": str(run), "--out": str(tmp_path / "out"), flag: value.format(missing=tmp_path / "missing")}
    with pytest.raises(SystemExit) as exit_:
        main(["sensitivity", "ziprc-sampler", *[x for pair in argv.items() for x in pair]])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and flag in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_rule_on_the_published_regime2_replay_reads_it_as_published():
    """results/ziprc-gemma/regime2-sample-cv.json: best-of-3 10 / 35 / 3 (sign p 0.09) is the best row, and
    nothing survives Holm over the 23 replay comparisons; the two dearest prune-only settings lose."""
    from pathlib import Path

    cv = json.loads((Path(__file__).parents[2] / "results/ziprc-gemma/regime2-sample-cv.json").read_text())["cv"]
    prune, best_of = sens.verdict(cv, "prune-only"), sens.verdict(cv, "best-of-n")
    assert not prune["detected"] and not best_of["detected"] and prune["n_comparisons"] == 23
    row = best_of["best"]
    assert (row["method"], row["wins"], row["ties"], row["losses"]) == ("best-of-3 (head)", 10, 35, 3)
    assert row["p_sign"] == pytest.approx(0.092, abs=1e-3) and row["p_sign_holm"] == 1.0
    assert prune["n_worse"] == {"prune-only": 2, "best-of-n": 0} and prune["best"]["better"] is False
