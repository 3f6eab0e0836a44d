"""Sensitivity of emergent-heads on a tiny model: the planted heads write the answer and ablating them removes
exactly that, strength 0 changes nothing, a large plant is named and validated, false positives are counted from
what each run called, the runs are the published workflow with its checks, and the CLI refuses bad values."""
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import metalens.circuits.emergent_sensitivity as sens
from metalens.circuits import EmergentConfig, ablate, make_task, run_emergent_heads
from metalens.circuits.compare import build_circuit, task_metric
from metalens.circuits.emergent_planted import UNIT, PlantedHeads
from metalens.circuits.metrics import embeddings, last_logits, prepare
from metalens.sensitivity import RESULT_KEYS

CFG = EmergentConfig(task="induction", n=6, n_test=6, n_edges=15, ig_steps=1, n_problems=0, n_random=2, n_boot=0)
HEADS = [(1, 2), (2, 0)]
LARGE = 2.0  # mean head-output norms: enough on the tiny gemma (its post-attention norm bounds what a head adds)


def sweep(model, plant, strengths, spy_calls):
    real = sens.run_emergent_heads

    def spy(base, post, config, **kw):
        result = real(base, post, config, **kw)
        spy_calls.append((config, result))
        return result

    patch = pytest.MonkeyPatch()
    patch.setattr(sens, "run_emergent_heads", spy)
    try:
        return sens.run_emergent_heads_sensitivity(
            model, sens.EmergentSensitivityConfig(CFG, plant=plant, strengths=strengths, seeds=1), progress=False)
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def swept(tiny_gemma):
    """Planted heads at strengths 0 and LARGE, one seed, with a spy on the workflow."""
    calls = []
    return sweep(tiny_gemma, "heads", (0, LARGE), calls), calls


@pytest.fixture(scope="module")
def control(tiny_gemma):
    """The MLP-only control at strength LARGE, two seeds."""
    calls = []
    real = sens.run_emergent_heads
    patch = pytest.MonkeyPatch()
    patch.setattr(sens, "run_emergent_heads", lambda *a, **k: calls.append((a[2], real(*a, **k))) or calls[-1][1])
    try:
        result = sens.run_emergent_heads_sensitivity(
            tiny_gemma, sens.EmergentSensitivityConfig(CFG, plant="mlp", strengths=(LARGE,), seeds=2), progress=False)
    finally:
        patch.undo()
    return result, calls


def metric(model, task):
    return task_metric(model, task)["task_metric"]


def test_planted_heads_write_the_answer_and_ablating_them_removes_exactly_that(tiny_gemma):
    task = make_task("induction", tiny_gemma.tokenizer, n=6)
    with ablate(tiny_gemma, HEADS):
        ablated_plain = task_metric(tiny_gemma, task)["per_pair"]
    plain = metric(tiny_gemma, task)
    with PlantedHeads(task, HEADS, 1.0).install(tiny_gemma):
        assert metric(tiny_gemma, task) > plain + 0.1  # the write raises the answer's logit difference
        with ablate(tiny_gemma, HEADS):
            np.testing.assert_allclose(task_metric(tiny_gemma, task)["per_pair"], ablated_plain, atol=1e-5)
    with PlantedHeads(task, HEADS, 1.0, where="mlp").install(tiny_gemma):  # the control: no head carries it
        with ablate(tiny_gemma, HEADS):
            assert np.mean(task_metric(tiny_gemma, task)["per_pair"]) > np.mean(ablated_plain) + 0.5


def test_the_write_follows_eap_igs_interpolation_between_corrupted_and_clean(tiny_gemma):
    task = make_task("induction", tiny_gemma.tokenizer, n=4)
    batch = prepare(tiny_gemma, task)
    e_clean, e_corr = embeddings(tiny_gemma, batch.clean_ids), embeddings(tiny_gemma, batch.corrupted_ids)
    at = lambda a: last_logits(tiny_gemma, batch, embeds=e_corr + a * (e_clean - e_corr))  # noqa: E731
    plain = {a: at(a) for a in (0.0, 0.5, 1.0)}
    plant = PlantedHeads(task, HEADS, 3.0)
    with plant.install(tiny_gemma):
        planted = {a: at(a) for a in (0.0, 0.5, 1.0)}
        by_ids = last_logits(tiny_gemma, batch)
    torch.testing.assert_close(planted[0.5], plain[0.5], atol=1e-5, rtol=0)  # 2a - 1 = 0: no write midway
    assert not torch.allclose(planted[1.0], plain[1.0]) and not torch.allclose(planted[0.0], plain[0.0])
    torch.testing.assert_close(by_ids, planted[1.0], atol=1e-4, rtol=0)  # ids and embeddings are recognised alike
    assert set(plant.norms) == {"1.2", "2.0"} and all(v > 0 for v in plant.norms.values())


def test_strength_zero_leaves_every_output_bit_identical(swept, tiny_gemma):
    _, calls = swept
    zero = calls[0][1]
    plain = run_emergent_heads(tiny_gemma, sens.planted_copy(tiny_gemma), replace(CFG, seed=0), progress=False)
    assert torch.equal(zero.comparison.post_scores, plain.comparison.post_scores)
    assert torch.equal(zero.comparison.post_scores, zero.comparison.base_scores)  # post is the base model
    assert zero.emergent == plain.emergent == [] and zero.ablation == plain.ablation
    task = make_task("induction", tiny_gemma.tokenizer, n=4)
    before = last_logits(tiny_gemma, prepare(tiny_gemma, task))
    with PlantedHeads(task, HEADS, 0.0).install(tiny_gemma):
        assert torch.equal(last_logits(tiny_gemma, prepare(tiny_gemma, task)), before)


def test_a_large_planted_pair_of_heads_is_named_and_validated(swept):
    result, calls = swept
    row = next(r for r in result.detection if r["strength"] == LARGE)
    assert row["detected_share"] == 1.0 and result.min_detectable_strength == LARGE
    big = result.runs[1]["details"]
    assert set(map(tuple, big["planted"])) <= set(map(tuple, big["heads"])) and big["validated"]
    assert big["planted_in_base_circuit"] == [] and big["metric_shift"] > 0
    assert big["plant"]["unit"] == UNIT and big["plant"]["where"] == "heads"


def test_sensitivity_runs_call_the_published_workflow_with_its_checks(swept):
    result, calls = swept
    assert sens.run_emergent_heads is run_emergent_heads  # the spy is gone; the module calls the public workflow
    assert [c for c, _ in calls] == [replace(CFG, seed=0)] * 2
    for (_, res), run in zip(calls, result.runs):
        row = res.ablation.get("emergent", {})
        vs, did = row.get("damage_vs_random_mean"), res.did.get("metric")
        published = bool(row) and all(t["mean_diff"] > 0 and t["p"] < 0.05 for t in (vs, did))
        assert run["details"]["validated"] == published
        assert run["details"]["heads"] == [list(h) for h in row.get("heads", [])]


def test_false_positives_are_counted_from_what_each_run_called(swept, control):
    for result, calls, planted_heads in ((*swept, True), (*control, False)):
        flags = []
        for (_, res), run in zip(calls, result.runs):
            if planted_heads or run["strength"] == 0:  # cannot show one: identical copy, or a group validated whole
                assert run["false_positive"] is None
                continue
            row = res.ablation.get("emergent", {})
            validated = bool(row) and all(t["mean_diff"] > 0 and t["p"] < 0.05
                                          for t in (row["damage_vs_random_mean"], res.did["metric"]))
            flags.append(validated)
            assert run["false_positive"] == validated
        assert result.false_positive_n == len(flags)
        assert result.false_positive_share == (pytest.approx(np.mean(flags)) if flags else None)
    assert control[0].false_positive_n > 0  # the control's planted runs are counted
    result, _ = control
    assert result.detection[0]["detected_share"] == 0.0  # nothing is planted in heads
    assert all(r["details"]["planted"] == [] and r["details"]["plant"]["where"] == "mlp" for r in result.runs)
    assert all(r["details"]["metric_shift"] > 0.5 for r in result.runs)  # the control did change the task metric


def fake(heads, vs, did):
    def test(m, p):
        return None if m is None else {"mean_diff": m, "low": m - 1, "high": m + 1, "p": p, "n": 6}
    ablation = {"emergent": {"heads": heads, "damage_vs_random_mean": test(*vs)}} if heads else {}
    return SimpleNamespace(ablation=ablation, did={"metric": test(*did)} if heads else {}, emergent=heads)


@pytest.mark.parametrize("heads, vs, did, planted, plant, detected, false_positive", [
    ([(1, 2), (2, 0)], (1.0, 0.01), (1.0, 0.01), HEADS, "heads", True, None),
    ([(1, 2), (2, 0), (0, 1)], (1.0, 0.01), (1.0, 0.01), HEADS, "heads", True, None),  # a rider: validated as a group
    ([(1, 2)], (1.0, 0.01), (1.0, 0.01), HEADS, "heads", False, None),  # one planted head not named
    ([(1, 2), (2, 0)], (1.0, 0.2), (1.0, 0.01), HEADS, "heads", False, None),  # not above the random groups
    ([(1, 2), (2, 0)], (1.0, 0.01), (-1.0, 0.01), HEADS, "heads", False, None),  # matters less after post-training
    ([(1, 2), (2, 0)], (None, None), (1.0, 0.01), HEADS, "heads", False, None),  # no random control: not validated
    ([(1, 2), (2, 0)], (1.0, 0.01), (1.0, 0.01), HEADS, "mlp", False, True),  # control: nothing planted in heads
    ([(1, 2), (2, 0)], (1.0, 0.2), (1.0, 0.01), HEADS, "mlp", False, False),  # control, group not validated
    ([], (None, None), (None, None), HEADS, "mlp", False, False),  # control, no emergent head
    ([(1, 2), (2, 0)], (1.0, 0.01), (1.0, 0.01), [], "mlp", False, None),  # strength 0: the copy is the base
    ([(1, 2), (2, 0)], (1.0, 0.01), (1.0, 0.01), [], "heads", False, None),  # strength 0
])
def test_a_trial_is_judged_by_both_published_checks(heads, vs, did, planted, plant, detected, false_positive):
    trial = sens.judge(fake(heads, vs, did), planted, plant)
    assert (trial.detected, trial.false_positive) == (detected, false_positive)


def test_planted_heads_are_drawn_outside_the_base_circuit(tiny_gemma):
    config = sens.EmergentSensitivityConfig(CFG, seeds=1)
    heads, base_heads = sens.draw_heads(tiny_gemma, config, 3)
    _, pick = sens.trial_task(tiny_gemma, config, 3)
    assert base_heads == sorted(build_circuit(tiny_gemma, pick, CFG.n_edges, CFG.ig_steps).heads)
    assert len(heads) == 2 and not set(heads) & set(base_heads)
    assert sens.draw_heads(tiny_gemma, config, 3)[0] == heads
    fixed = sens.EmergentSensitivityConfig(CFG, heads=((0, 1), (2, 3)), seeds=1)
    assert sens.draw_heads(tiny_gemma, fixed, 3)[0] == [(0, 1), (2, 3)]


def test_config_refuses_what_the_plant_cannot_do():
    with pytest.raises(ValueError, match="own"):
        sens.EmergentSensitivityConfig(replace(CFG, pairs="own"))
    with pytest.raises(ValueError, match="plant"):
        sens.EmergentSensitivityConfig(CFG, plant="attn")
    with pytest.raises(ValueError, match="distinct"):
        sens.EmergentSensitivityConfig(CFG, heads=((1, 1), (1, 1)))


def test_cli_refuses_bad_values_before_loading_a_model(monkeypatch, tmp_path, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: pytest.fail("model loaded before the checks"))
    base = ["sensitivity", "emergent-heads", "--model", "tiny", "--out", str(tmp_path / "o")]
    for flag, value in (("--strengths", "-1"), ("--strengths", "nan"), ("--seeds", "0"), ("--heads", "x"),
                        ("--plant", "attn"), ("--n-edges", "0"), ("--task", "nope")):
        with pytest.raises(SystemExit) as err:
            main(base + [flag, value])
        assert err.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_head_the_model_lacks_before_writing(tmp_path, capsys):
    from metalens.cli import main

    out = tmp_path / "o"
    argv = ["sensitivity", "emergent-heads", "--model", "random:tiny-gemma3", "--device", "cpu", "--out", str(out),
            "--heads", "1.2", "L7.H0"]
    assert main(argv) == 2 and "L7.H0" in capsys.readouterr().err and not out.exists()


def test_cli_writes_the_detection_curve_and_a_rerun_resumes(monkeypatch, tmp_path, capsys):
    from metalens.cli import main

    out = tmp_path / "out"
    argv = ["sensitivity", "emergent-heads", "--model", "random:tiny-gemma3", "--device", "cpu", "--task", "induction",
            "--n", "6", "--n-test", "6", "--n-edges", "15", "--ig-steps", "1", "--n-random", "2", "--strengths", "0",
            str(LARGE), "--seeds", "1", "--out", str(out)]
    assert main(argv) in (0, None)
    result = json.loads((out / "results.json").read_text())
    assert set(result) == set(RESULT_KEYS) and result["strength_unit"] == UNIT
    assert result["settings"]["plant"] == "heads" and result["settings"]["emergent"]["n_edges"] == 15
    assert len(list((out / "runs").glob("*.json"))) == 2 and "min detectable strength" in capsys.readouterr().out
    monkeypatch.setattr(sens, "run_emergent_heads", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) in (0, None)


def test_a_bfloat16_model_carries_the_plant_in_float32_passes_too():
    from metalens.precision import in_float32
    from metalens.testing import tiny_model

    half = tiny_model("gemma3")
    half.hf.to(torch.bfloat16)
    task = make_task("induction", half.tokenizer, n=6)
    with in_float32(half):
        plain = metric(half, task)
    with PlantedHeads(task, HEADS, 1.0).install(half):
        with in_float32(half):  # the pipeline computes circuits and ablations in float32
            assert metric(half, task) > plain + 0.1
            with ablate(half, HEADS):
                planted_ablated = metric(half, task)
    with in_float32(half), ablate(half, HEADS):
        assert planted_ablated == pytest.approx(metric(half, task), abs=1e-4)
