"""Sensitivity of the ZIP-RC reward head on a tiny model: planted label noise flips the share it says,
reliability 1 is the published pipeline bit for bit, reliable labels are detected, coin-flip labels
are the null whose detections are counted, and the trials run the published train and eval workflows."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import metalens.introspect.sensitivity as sens
from metalens.introspect import EvalConfig, Question, TrainConfig, generate_rollouts, load_rollouts, run_eval, run_train
from metalens.introspect.heads.features import cached_positions, rollout_positions
from metalens.introspect.rollouts.planted import UNIT, flip_mask, plant_label_noise, read_planted
from metalens.introspect.workflows.train import head_spec
from metalens.sensitivity import RESULT_KEYS
from metalens.store import sha256
from metalens.testing import tiny_model

TRAIN = TrainConfig(steps=30, test_fraction=0.5)  # 20 held-out operand units: the rule's intervals exist


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)  # 64-wide models: thread hand-offs cost more than the arithmetic
    return tiny_model("gemma3", seed=2)


def _store(model, out, n):
    """A finished store of `n` questions x 2 samples whose graded correctness the states can read:
    'Easy' questions are answered right, 'Hard' ones wrong (texts planted; `load_rollouts` grades texts)."""
    questions = [Question(f"{'Easy' if i % 2 else 'Hard'}: What is {i} + 1?\nA:", i + 1, level=1) for i in range(n)]
    generate_rollouts(model, questions, out, n_samples=2, max_new_tokens=4, seed=0, prefix="")
    records = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    for r in records:
        r["texts"] = [f" {r['answer'] if r['task_index'] % 2 else -1}"] * len(r["texts"])
    (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sha256"] = sha256(out / "rollouts.jsonl")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    return _store(model, tmp_path_factory.mktemp("store"), 40)


@pytest.fixture(scope="module")
def swept(model, store, tmp_path_factory):
    """A sweep (reliability 0 and 1, two seeds) with spies on the two workflows it calls."""
    calls = {"train": [], "eval": []}
    real_train, real_eval = sens.run_train, sens.run_eval

    def spy_train(model, config, **kw):
        result = real_train(model, config, **kw)
        calls["train"].append((config, result))
        return result

    def spy_eval(model, config, **kw):
        result = real_eval(model, config, **kw)
        calls["eval"].append((config, result))
        return result

    patch = pytest.MonkeyPatch()
    patch.setattr(sens, "run_train", spy_train)
    patch.setattr(sens, "run_eval", spy_eval)
    out = tmp_path_factory.mktemp("sens")
    try:
        result = sens.run_label_noise_sensitivity(
            model, sens.LabelNoiseSensitivityConfig(str(store), TRAIN, strengths=(0, 1), seeds=2), out=out,
            progress=False)
    finally:
        patch.undo()
    return result, calls, out


def _same(a, b) -> bool:
    """Equal as JSON (NaN equal to NaN: a within-problem AUROC with no mixed question is NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_labels_flip_at_the_planted_share_and_reliability_0_ignores_the_truth():
    n = [8] * 5000
    for strength in (0.0, 0.4, 1.0):
        flips = np.concatenate(flip_mask(n, strength, seed=3))
        assert abs(flips.mean() - (1 - strength) / 2) < 0.01
    assert flip_mask(n, 0.4, 3) == flip_mask(n, 0.4, 3) != flip_mask(n, 0.4, 4)
    truth = np.random.default_rng(0).random(40000) < 0.1  # a 10 % solve rate
    label = truth ^ np.concatenate(flip_mask(n, 0.0, seed=5))
    assert abs(label[truth].mean() - 0.5) < 0.03 and abs(label[~truth].mean() - 0.5) < 0.01  # a coin either way
    with pytest.raises(ValueError, match="1.5"):
        flip_mask(n, 1.5, 0)


def test_a_planted_store_is_read_with_exactly_the_named_labels_flipped(store, tmp_path):
    graded = load_rollouts(store)
    planted = plant_label_noise(store, tmp_path / "p", 0.5, seed=1)
    flips = {tuple(f) for f in read_planted(planted)["flips"]}
    assert 0 < len(flips) < 80 and (planted / "rollouts.jsonl").read_bytes() == (store / "rollouts.jsonl").read_bytes()
    for r, g in zip(load_rollouts(planted), graded):
        assert r["rewards"] == [1 - x if (r["task_index"], j) in flips else x for j, x in enumerate(g["rewards"])]
    assert load_rollouts(plant_label_noise(store, tmp_path / "one", 1.0, seed=1)) == graded
    with pytest.raises(ValueError, match="already holds planted labels"):
        plant_label_noise(planted, tmp_path / "twice", 0.5, seed=1)


def test_relabelled_positions_equal_a_forward_pass_over_the_planted_store(model, store, tmp_path):
    graded = load_rollouts(store)
    spec = head_spec(TRAIN, graded)
    planted = load_rollouts(plant_label_noise(store, tmp_path / "p", 0.3, seed=2))
    fresh = rollout_positions(model, planted, spec)
    again = sens.relabelled(cached_positions(model, graded, spec, None, False), planted, spec)
    for name in fresh.__dataclass_fields__:
        a, b = getattr(fresh, name), getattr(again, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert not torch.equal(fresh.reward, rollout_positions(model, graded, spec).reward)  # the labels did change


def test_a_trial_on_the_store_states_equals_one_that_reads_them_afresh(model, store, tmp_path):
    config = sens.LabelNoiseSensitivityConfig(str(store), TRAIN, strengths=(0.5,), seeds=1)
    graded = load_rollouts(store)
    base = cached_positions(model, graded, head_spec(TRAIN, graded), None, False)
    cheap = sens.label_noise_trial(model, config, 0.5, 0, base=base, work=tmp_path)
    full = sens.label_noise_trial(model, config, 0.5, 0, work=tmp_path)
    assert _same(cheap.details, full.details) and cheap.detected == full.detected
    assert list(tmp_path.iterdir()) == []  # the trial's planted store and cache are gone


def test_reliability_1_leaves_every_output_bit_identical(swept, model, store, tmp_path):
    result, calls, _ = swept
    one = [i for i, r in enumerate(result.runs) if r["strength"] == 1.0]  # calls are in the runs' order
    plain = run_train(model, replace(TRAIN, rollouts=str(store)), out=tmp_path / "plain", progress=False)
    plain_eval = run_eval(model, EvalConfig(plain, fractions=(), verbal=False, n_shuffles=3), progress=False)
    for i in one:
        _, trained = calls["train"][i]
        _, evaluated = calls["eval"][i]
        assert torch.equal(trained.head.weight, plain.head.weight)
        for key in ("solve_rates", "train_tasks", "test_tasks", "heldout_all_positions", "train_all_positions",
                    "rollout_settings", "spec"):
            assert _same(getattr(trained, key), getattr(plain, key)), key
        assert _same(evaluated.all_positions, plain_eval.all_positions)
        assert _same(evaluated.reliability, plain_eval.reliability) and evaluated.n_test_positions > 0


def test_reliable_labels_are_detected(swept):
    result, _, _ = swept
    row = next(r for r in result.detection if r["strength"] == 1.0)
    assert row["detected_share"] == 1.0 and result.min_detectable_strength == 1.0
    assert all(r["details"]["heldout_auroc_vs_graded"] > 0.9 for r in result.runs if r["strength"] == 1.0)


def test_sensitivity_runs_call_the_published_workflows_with_its_rule(swept):
    result, calls, _ = swept
    assert sens.run_train is run_train and sens.run_eval is run_eval  # the spies are gone
    assert len(calls["train"]) == len(calls["eval"]) == len(result.runs) == 4
    for (train_config, trained), (eval_config, evaluated), run in zip(calls["train"], calls["eval"], result.runs):
        assert replace(train_config, rollouts=None) == TRAIN  # the published settings, on the planted copy
        assert eval_config.train is trained and not eval_config.verbal and eval_config.cv == 0
        assert eval_config.n_shuffles == 3 and eval_config.rollouts is None  # the head's own held-out split
        assert run["detected"] == sens.reads_correctness(evaluated.all_positions)


def test_the_rule_needs_both_intervals_above_zero():
    def rows(chance, gap):
        return {"head_above_chance": {"low": chance[0], "high": chance[1]}, "head_vs_shuffled": {"ci95": list(gap)}}

    assert sens.reads_correctness(rows((0.01, 0.2), (0.02, 0.3)))
    assert not sens.reads_correctness(rows((0.01, 0.2), (-0.02, 0.3)))
    assert not sens.reads_correctness(rows((0.0, 0.2), (0.02, 0.3)))
    assert not sens.reads_correctness(rows((float("nan"), float("nan")), (0.02, 0.3)))  # under 10 units: no interval
    assert not sens.reads_correctness(rows((None, None), (None, None)))  # as read back from JSON
    assert sens.reads_backwards(rows((-0.3, -0.01), (-0.1, 0.1)))
    assert not sens.reads_backwards(rows((-0.1, 0.1), (-0.1, 0.1)))


def test_false_positives_are_counted_from_what_each_run_called(swept):
    result, calls, _ = swept
    for (_, evaluated), run in zip(calls["eval"], result.runs):
        called = sens.reads_correctness(evaluated.all_positions)
        assert run["false_positive"] == (called if run["strength"] == 0 else None)  # above 0 there is no null
        assert run["details"]["reads_backwards"] == sens.reads_backwards(evaluated.all_positions)
    null_row = next(r for r in result.detection if r["strength"] == 0)
    zero = [r["false_positive"] for r in result.runs if r["strength"] == 0]
    assert result.false_positive_n == len(zero) == null_row["n_seeds"]
    assert result.false_positive_share == np.mean(zero) == null_row["detected_share"]
    null = [r for r in result.runs if r["strength"] == 0]
    assert all(abs(r["details"]["label_agreement"] - 0.5) < 0.2 for r in null)  # coin-flip labels


def test_results_json_has_the_documented_keys_and_unit(swept):
    _, _, out = swept
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(RESULT_KEYS) and data["strength_unit"] == UNIT
    assert "AUROC - 0.5" in data["detection_rule"] and len(list((out / "runs").glob("*.json"))) == 4
    assert (out / "report.html").exists() and not list(out.glob("ziprc-trial-*"))


def test_config_refuses_trained_modes_and_strengths_outside_0_1(store):
    with pytest.raises(ValueError, match="mode 'lora'"):
        sens.LabelNoiseSensitivityConfig(str(store), TrainConfig(mode="lora"))
    with pytest.raises(ValueError, match="2.0"):
        sens.LabelNoiseSensitivityConfig(str(store), TRAIN, strengths=(0, 2))


def test_cli_refuses_bad_values_before_loading_a_model(monkeypatch, tmp_path, store, model, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda *a, **k: pytest.fail("model loaded before the checks"))
    small = _store(model, tmp_path / "small", 8)
    planted = plant_label_noise(store, tmp_path / "planted", 0.5, 0)
    base = ["sensitivity", "ziprc", "--model", "tiny", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as err:
        main(base + ["--rollouts", str(store), "--strengths", "0", "1.5"])
    assert err.value.code == 2 and "--strengths" in capsys.readouterr().err
    assert main(base + ["--rollouts", str(small)]) == 2
    assert "operand units" in capsys.readouterr().err
    assert main(base + ["--rollouts", str(planted)]) == 2
    assert "planted labels" in capsys.readouterr().err
    all_wrong = tmp_path / "wrong"
    generate_rollouts(model, [Question(f"What is {i} + 1?", 999, 1) for i in range(40)], all_wrong, n_samples=2,
                      max_new_tokens=2, seed=0, prefix="")
    assert main(base + ["--rollouts", str(all_wrong)]) == 2
    assert "is wrong" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_cli_runs_and_a_rerun_resumes(monkeypatch, tmp_path, store, model, capsys):
    import metalens
    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: model)
    out = tmp_path / "cli"
    argv = ["sensitivity", "ziprc", "--model", "tiny", "--rollouts", str(store), "--out", str(out), "--steps", "30",
            "--test-fraction", "0.5", "--length-bins", "geometric", "--strengths", "1", "--seeds", "1"]
    assert main(argv) == 0
    assert "min detectable strength" in capsys.readouterr().out
    settings = json.loads((out / "sensitivity-settings.json").read_text())["settings"]
    assert settings["train"]["steps"] == 30 and settings["train"]["test_fraction"] == 0.5
    monkeypatch.setattr(sens, "run_train", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert main(argv) == 0
    assert main([*argv, "--steps", "31"]) == 2 and "other settings" in capsys.readouterr().err  # more --seeds would extend
