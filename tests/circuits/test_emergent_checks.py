"""The emergent-heads checks: disjoint pick/test pairs, base-model ablation and its difference in
differences, layer-matched random controls, bootstrap recurrence, the kl metric, head scaling, float32."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from metalens.circuits import EmergentConfig, make_task, run_emergent_heads
from metalens import power
from metalens.circuits.compare import (Circuit, ablation_effects, circuit_recurrence, compare,
                                       difference_in_differences)
from metalens.testing import tiny_model

compare_module = sys.modules["metalens.circuits.compare"]


@pytest.fixture(scope="module")
def other():
    return tiny_model("gemma3", seed=1)


def test_heads_are_picked_on_pairs_the_checks_never_read(tiny_gemma, other, monkeypatch):
    picked, checked = [], []
    attribute, metric = compare_module.attribute_edges, compare_module.task_metric
    monkeypatch.setattr(compare_module, "attribute_edges",
                        lambda model, task, steps=5: picked.extend(task.clean) or attribute(model, task, steps))
    monkeypatch.setattr(compare_module, "task_metric",
                        lambda model, task, *a: checked.extend(task.clean) or metric(model, task, *a))
    task = make_task("induction", tiny_gemma.tokenizer, n=8)
    result = compare(tiny_gemma, other, task, n_edges=15, steps=1, n_random=1)
    assert result.emergent, "the two random models should differ"
    assert picked and checked and not set(picked) & set(checked)
    assert set(picked) | set(checked) == set(task.clean)
    assert result.metadata["n_pick"] + result.metadata["n_test"] == len(task)


def test_random_control_heads_are_layer_matched(tiny_gemma):
    task = make_task("induction", tiny_gemma.tokenizer, n=3)
    group = [(0, 0), (0, 1), (2, 3)]
    out = ablation_effects(tiny_gemma, task, {"g": group}, n_random=5, seed=3)
    for i in range(5):
        heads = out[f"random_{i}"]["heads"]
        assert sorted(l for l, _ in heads) == [0, 0, 2] and not set(heads) & set(group)
        assert out[f"random_{i}"]["layer_matched"]


def test_each_ablation_row_has_an_interval_and_a_paired_effect(tiny_gemma):
    task = make_task("induction", tiny_gemma.tokenizer, n=4)
    out = ablation_effects(tiny_gemma, task, {"g": [(1, 2)]}, n_random=1)
    row = out["g"]
    assert row["low"] <= row["task_metric"] <= row["high"] and len(row["per_pair"]) == 4
    assert row["damage"]["n"] == 4 and row["damage"]["mean_diff"] == pytest.approx(
        np.mean(out["none"]["per_pair"]) - np.mean(row["per_pair"]), abs=1e-5)
    harm = np.subtract(out["none"]["per_pair"], row["per_pair"])
    assert row["damage"]["mde"] == power.paired_mde(harm)  # the sensitivity beside the interval
    chance = np.subtract(out["none"]["per_pair"], out["random_mean"]["per_pair"])
    assert row["damage_vs_random_mean"]["mde"] == power.paired_mde(harm - chance)
    assert "damage_vs_random_mean" not in out["random_0"]


def test_difference_in_differences_subtracts_the_base_models_damage_pair_by_pair():
    post = {"none": {"per_pair": [3.0, 3.0, 2.0]}, "emergent": {"per_pair": [1.0, 0.0, 2.0]}}  # damage 2, 3, 0
    base = {"none": {"per_pair": [1.0, 2.0, 0.0]}, "emergent": {"per_pair": [1.0, 1.0, 0.0]}}  # damage 0, 1, 0
    did = difference_in_differences("logit_diff", post, base)["metric"]
    assert did["mean_diff"] == pytest.approx((2 + 2 + 0) / 3) and did["n"] == 3
    assert did["mde"] == power.paired_mde([2.0, 2.0, 0.0])
    # for kl the damage is the rise of the divergence from the intact model
    kl = difference_in_differences("kl", {"none": {"per_pair": [0, 0]}, "emergent": {"per_pair": [2, 4]}},
                                   {"none": {"per_pair": [0, 0]}, "emergent": {"per_pair": [1, 1]}})["metric"]
    assert kl["mean_diff"] == pytest.approx(2.0)


def test_bootstrap_recurrence_counts_the_resamples_in_which_a_head_is_emergent(tiny_gemma, monkeypatch):
    task = make_task("induction", tiny_gemma.tokenizer, n=5)
    marker = task.clean[0]

    def fake_circuit(model, sample, n_edges, steps):  # post gains (1, 1) exactly when pair 0 was drawn
        heads = {(0, 0)} | ({(1, 1)} if model == "post" and marker in sample.clean else set())
        return Circuit([], heads, torch.zeros(3, 4))

    monkeypatch.setattr(compare_module, "build_circuit", fake_circuit)
    rec = circuit_recurrence("base", "post", task, n_boot=40, seed=7)
    rng = np.random.default_rng(7)
    expected = np.mean([0 in rng.integers(0, 5, 5) for _ in range(40)])
    assert rec["n_boot"] == 40 and rec["emergent"] == {(1, 1): pytest.approx(expected)} and rec["lost"] == {}
    assert 0 < expected < 1


def test_emergent_heads_run_the_base_ablation_scaling_and_recurrence_with_the_kl_metric(tiny_gemma, other, tmp_path):
    cfg = EmergentConfig(task="induction", n=4, n_test=4, metric="kl", n_edges=15, ig_steps=1, n_problems=0,
                         n_random=1, n_boot=2)
    result = run_emergent_heads(tiny_gemma, other, cfg, out=tmp_path, progress=False)
    assert result.metadata["metric"] == "kl" and result.emergent
    assert result.ablation["none"]["task_metric"] == pytest.approx(0, abs=1e-6)  # KL(intact || intact)
    assert result.ablation["emergent"]["task_metric"] > 0
    assert result.comparison.base_ablation["emergent"]["heads"] == result.ablation["emergent"]["heads"]
    assert result.did["metric"]["n"] == 4
    assert {"none", "x1.3", "x0.5"} == set(result.scaling) and result.scaling["x1.3"]["change"]["n"] == 4
    assert result.recurrence["n_boot"] == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {"difference_in_differences", "scaling", "base_ablation", "recurrence"} <= set(saved)
    assert saved["config"]["metric"] == "kl"


def test_emergent_heads_verb_passes_metric_and_the_new_options(tmp_path):
    from metalens.cli import build_parser

    args = build_parser().parse_args(["emergent-heads", "--post", str(tmp_path), "--out", "o", "--metric", "kl",
                                      "--n-test", "6", "--n-boot", "0"])
    assert (args.metric, args.n_test, args.n_boot) == ("kl", 6, 0)


def test_heads_are_scored_in_float32_for_a_bfloat16_model():
    from metalens.circuits import HeadsConfig, run_heads

    full, half = tiny_model("gemma3"), tiny_model("gemma3")
    half.hf.to(torch.bfloat16)
    task = make_task("induction", full.tokenizer, n=4)
    cfg = HeadsConfig(task=task, methods=("exact",), detect=False)
    want = run_heads(full, cfg, progress=False).scores["exact"]
    got = run_heads(half, cfg, progress=False).scores["exact"]
    # bf16 weights upcast exactly, so only the bf16 rounding of the weights themselves differs
    reference = tiny_model("gemma3")
    reference.hf.to(torch.bfloat16).float()
    assert torch.allclose(got, run_heads(reference, cfg, progress=False).scores["exact"], atol=1e-5)
    assert half.dtype == torch.bfloat16 and want.shape == got.shape
