"""Cross-validation by problem and the bootstrap gap over shuffled-label heads, on planted data."""
import numpy as np
import torch

from metalens.introspect import BinSpec
from metalens.introspect.heads.bins import prefix_labels
from metalens.introspect.heads.features import Positions
from metalens.introspect.evaluation.crossval import cross_validate
from metalens import power
from metalens.introspect.evaluation.metrics import above_chance, auroc_gap, within_problem_auroc


def _planted(n_tasks: int, signal: float, d_model: int = 64, seed: int = 0) -> Positions:
    """4 samples per task; a task's samples share a reward, written along one hidden direction."""
    gen = torch.Generator().manual_seed(seed)
    spec, parts, sample = BinSpec(), {k: [] for k in ("reward", "remaining", "bin", "task", "sample", "frac")}, 0
    for task in range(n_tasks):
        reward = task % 2
        for _ in range(4):
            n = int(torch.randint(3, 12, (1,), generator=gen))
            lab = prefix_labels(n, reward, spec)
            for k in ("reward", "remaining", "bin"):
                parts[k].append(lab[k])
            parts["task"].append(torch.full((n,), task))
            parts["sample"].append(torch.full((n,), sample))
            parts["frac"].append(torch.arange(n) / n)
            sample += 1
    cat = {k: torch.cat(v) for k, v in parts.items()}
    hidden = torch.randn(len(cat["bin"]), d_model, generator=gen) * 10
    hidden[:, 0] += signal * 10 * (2 * cat["reward"] - 1)  # reward along dimension 0
    hidden[:, 1] += 20 * cat["remaining"].float().log()  # remaining length along dimension 1
    return Positions(hidden, **cat)


def test_auroc_gap_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)
    y = np.repeat(np.arange(40) % 2, 5)
    nulls = [rng.random(200) for _ in range(3)]
    good = auroc_gap(y, y + rng.normal(0, 0.5, 200), nulls, groups, n_boot=200)
    assert good["gap"] > 0.3 and good["ci95"][0] > 0 and good["share_not_above"] == 0
    noise = auroc_gap(y, rng.random(200), nulls, groups, n_boot=200)
    assert noise["ci95"][0] < 0 < noise["ci95"][1]


def test_cross_validation_finds_a_planted_reward_and_not_an_absent_one(tiny_gemma):
    spec = BinSpec()
    levels = {t: 1 + t // 15 for t in range(30)}
    planted = cross_validate(tiny_gemma, _planted(30, signal=1.5), spec, k=4, steps=50, n_shuffles=2, n_boot=100,
                             levels=levels)
    head, gap = planted["all_positions"]["head"], planted["all_positions"]["head_vs_shuffled"]
    assert head["auroc"] > 0.9 and gap["ci95"][0] > 0.2
    assert abs(planted["all_positions"]["shuffled"]["auroc"] - 0.5) < 0.2
    first = planted["fractions"][0]
    assert first["length_mae"] < first["length_mae_constant"]  # the length direction is learnt too
    absent = cross_validate(tiny_gemma, _planted(30, signal=0.0), spec, k=4, steps=50, n_shuffles=2, n_boot=100)
    assert absent["all_positions"]["head_vs_shuffled"]["ci95"][0] < 0
    assert planted["n_tasks"] == 30 and planted["n_samples"] == 120
    assert set(planted["by_level"]) == {1, 2}  # the planted reward is there within each level too
    assert all(r["head"]["auroc"] > 0.85 for r in planted["by_level"].values())


def _twin_records(n_pairs: int) -> list[dict]:
    """Questions a + b and b + a for n_pairs operand pairs, interleaved by task index."""
    records = []
    for i in range(n_pairs):
        a, b = i + 1, i + 12
        for j, (x, y) in enumerate([(a, b), (b, a)]):
            records.append({"task_index": 2 * i + j, "prompt": f"Q: What is {x} + {y}?\nA:"})
    return records


def test_commuted_twins_share_a_fold_and_a_side_of_the_split():
    from metalens.introspect.evaluation.crossval import problem_folds
    from metalens.introspect.rollouts import problem_unit, problem_units, split_tasks

    assert problem_unit("Q: What is 3 + 4?\nA:") == problem_unit("Q: What is 4 + 3?\nA:")
    assert problem_unit("Q: What is 3 + 4?\nA:") != problem_unit("Q: What is 3 + 5?\nA:")
    records = _twin_records(10)
    units = problem_units(records)
    twin = {t: t ^ 1 for t in units}  # 0 <-> 1, 2 <-> 3, ...
    for seed in range(5):
        train, test = split_tasks(records, 0.3, seed)
        assert all(twin[t] in test for t in test) and all(twin[t] in train for t in train)
        positions = _planted(20, signal=0.0)  # task ids 0..19, as in the records
        for fold in problem_folds(positions, 4, seed, units):
            assert all(twin[t] in fold for t in fold)


def test_cross_validation_reports_within_problem_auroc_and_distance_from_chance(tiny_gemma):
    planted = cross_validate(tiny_gemma, _planted(30, signal=1.5), BinSpec(), k=3, steps=30, n_shuffles=1,
                             n_boot=100)
    everywhere = planted["all_positions"]
    assert everywhere["head_above_chance"]["low"] > 0.3
    # every planted problem has one outcome for all its samples: nothing to rank within a problem
    assert everywhere["within_problem"]["head"]["n_mixed"] == 0
    assert np.isnan(everywhere["within_problem"]["head"]["estimate"])


def test_each_auroc_interval_carries_its_minimum_detectable_effect():
    rng = np.random.default_rng(1)
    y = rng.random(120) < 0.4
    p = y + rng.normal(0, 1.0, 120)
    groups, problems = np.repeat(np.arange(30), 4), np.repeat(np.arange(30), 4)
    for out in (above_chance(y, p, groups, n_boot=100), within_problem_auroc(y, p, problems, n_boot=100)):
        assert out["mde"] == power.interval_mde(out["low"], out["high"], out["n"])
    gap = auroc_gap(y, p, [rng.random(120)], groups, n_boot=100)
    assert gap["mde"] == power.interval_mde(*gap["ci95"], gap["n_groups"])
