"""The metacognitive atlas: metrics on planted arrays, the battery's readings, atlas.json, the CLI."""
import argparse
import json

import numpy as np
import pytest
import torch

from metalens.analyses import metacog
from metalens.analyses.atlas import AtlasConfig, AtlasResult, atlas_command, probe_signal, run_atlas
from metalens.analyses.battery import Item, arithmetic_items, option_reading, read_battery, read_items, render

SMALL = dict(n_arithmetic=8, n_facts=8, n_shots=1, n_boot=100, reporting_draws=2, reporting_n=(0, 2, 4), cv=3)


def _planted(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    return rng, y


# --- metrics on arrays -------------------------------------------------------------------------


def test_signal_right_by_construction_scores_auroc_one():
    rng, y = _planted()
    ci = metacog.auroc_ci(y, y + 0.1 * rng.random(len(y)), n_boot=200)
    assert ci.estimate == 1.0 and ci.low > 0.99


def test_shuffled_signal_scores_auroc_near_half_with_an_interval_covering_it():
    rng, y = _planted(400)
    ci = metacog.auroc_ci(y, rng.permutation(y + 0.1 * rng.random(len(y))), n_boot=300)
    assert abs(ci.estimate - 0.5) < 0.08 and ci.low < 0.5 < ci.high


def test_bootstrap_resamples_whole_groups():
    rng, y = _planted(40)
    ci = metacog.auroc_ci(np.repeat(y, 3), np.repeat(rng.random(40), 3), groups=np.repeat(np.arange(40), 3), n_boot=50)
    assert ci.n == 40 and "40 groups" in ci.method


def test_blanket_confident_model_has_withdraw_delta_zero():
    _, y = _planted()
    p_withdraw = np.full(len(y), 0.02)  # never withdraws, whatever the answer
    decisions = (p_withdraw > 0.5).astype(float)
    assert metacog.withdraw_delta(decisions, y) == 0.0
    assert metacog.withdraw_delta(p_withdraw, y) == pytest.approx(0.0)
    ci = metacog.delta_ci(metacog.withdraw_delta, decisions, y, n_boot=100)
    assert ci.estimate == ci.low == ci.high == 0.0


def test_withdrawing_exactly_the_wrong_answers_gives_delta_one_and_betting_on_the_right_ones_too():
    _, y = _planted()
    assert metacog.withdraw_delta((~y).astype(float), y) == 1.0
    assert metacog.bet_delta(y.astype(float), y) == 1.0
    assert metacog.bet_delta((~y).astype(float), y) == -1.0
    assert np.isnan(metacog.withdraw_delta(np.zeros(4), np.ones(4)))  # no wrong answers: undefined


def test_ece_and_brier_on_a_hand_computed_case():
    conf, right = np.array([0.9, 0.9, 0.1, 0.1]), np.array([1, 0, 0, 0])
    # 2 bins: [0, .5) holds 0.1, 0.1 (accuracy 0): |0 - .1| x 1/2; [.5, 1] holds 0.9, 0.9 (accuracy .5): |.5 - .9| x 1/2
    assert metacog.ece(conf, right, n_bins=2) == pytest.approx(0.05 + 0.2)
    assert metacog.brier(conf, right) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    bins = metacog.reliability(conf, right, n_bins=2)
    assert [(b["n"], b["confidence"], b["accuracy"]) for b in bins] == [(2, pytest.approx(0.1), 0.0),
                                                                         (2, pytest.approx(0.9), 0.5)]


def test_certain_and_right_is_perfectly_calibrated_and_confidence_one_lands_in_the_last_bin():
    assert metacog.ece(np.ones(5), np.ones(5)) == 0.0 and metacog.brier(np.ones(5), np.ones(5)) == 0.0
    assert metacog.reliability(np.ones(3), np.ones(3), n_bins=10)[0]["low"] == 0.9
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metacog.ece(np.array([1.5]), np.array([1]))


def test_gap_is_probe_minus_best_behavioural_auroc():
    from metalens.stats import auroc

    rng, y = _planted()
    perfect, a, b = y + 0.1 * rng.random(len(y)), rng.random(len(y)), rng.random(len(y))
    ci = metacog.gap_ci(y, perfect, {"a": a, "b": b}, n_boot=200)
    assert ci.estimate == pytest.approx(1 - max(auroc(y, a), auroc(y, b)))
    assert ci.low > 0.2
    same = metacog.gap_ci(y, perfect, {"same": perfect}, n_boot=50)
    assert same.estimate == same.low == same.high == 0.0


def _assert_at_chance_on_shuffled_labels(probe, resid, y, groups, seed=0):
    """Train `probe` on one permutation of the labels and score its held-out predictions against that same
    permutation: a probe that does not leak is at chance, within 3 null standard errors of 0.5 (Mann-Whitney:
    sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg)), 0.065 at 40/40); one that sees its test labels is not."""
    shuffled = np.random.default_rng(seed).permutation(y)
    predictions = probe(resid, shuffled, groups, [0, 1, 2], cv=4, C=1.0)["predictions"]
    n_pos, n_neg = int(shuffled.sum()), int((~shuffled).sum())
    tolerance = 3 * np.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    score = metacog.auroc_ci(shuffled, predictions, n_boot=0).estimate
    assert abs(score - 0.5) < tolerance, f"AUROC {score:.3f} on shuffled labels: the probe leaks its labels"
    return score


def _planted_resid(n=80, d=16):
    rng, y = _planted(n)
    resid = rng.normal(size=(n, 3, d))
    resid[:, 1, 0] += 3.0 * (2 * y - 1)  # layer 1 carries correctness
    return resid, y, np.arange(n) // 2  # groups: pairs of near-copies


def test_probe_finds_a_planted_correctness_direction_at_its_layer_and_not_in_shuffled_labels():
    resid, y, groups = _planted_resid()
    out = probe_signal(resid, y, groups, [0, 1, 2], cv=4, C=1.0)
    assert metacog.auroc_ci(y, out["predictions"], n_boot=0).estimate > 0.95
    assert out["fold_layers"] == [1, 1, 1, 1]
    _assert_at_chance_on_shuffled_labels(probe_signal, resid, y, groups)


def test_the_shuffled_label_check_fails_a_probe_that_leaks_its_labels():
    """The check above must be able to fail: a probe scored on rows it was fit on, or one that reads the
    labels outright, is caught (scoring against a second, independent permutation caught neither)."""
    from metalens.probes import train_probe

    resid, y, groups = _planted_resid()

    def reads_labels(resid, labels, groups, layers, cv, C):
        return {"predictions": labels + 0.01 * np.arange(len(labels)) / len(labels)}

    def in_sample(resid, labels, groups, layers, cv, C):  # fit and scored on the same rows: no held-out folds
        X = resid.reshape(len(labels), -1)
        probe = train_probe(X, labels.astype(int), test_size=0, cv=0, C=C, seed=0)
        return {"predictions": probe.predict_proba(X).numpy()}

    for leaky in (reads_labels, in_sample):
        with pytest.raises(AssertionError, match="leaks"):
            _assert_at_chance_on_shuffled_labels(leaky, resid, y, groups)


# --- items and the battery on tiny models ----------------------------------------------------


def test_arithmetic_items_balance_the_right_position_and_group_by_operands():
    items = arithmetic_items(40, levels=(1, 2, 3, 4), seed=3)
    for level in (1, 2, 3, 4):  # balanced within every level, not only overall
        assert sum(it.answer for it in items if it.level == level) == 5
    for it in items:
        assert int(it.choices[it.answer]) == eval(it.question.removeprefix("What is ").rstrip("?"))
        assert it.choices[0] != it.choices[1] and it.group.startswith("arith:")


def test_shipped_facts_are_balanced_and_user_items_take_the_answer_as_text(tmp_path):
    from metalens.analyses.battery import shipped_facts

    facts = shipped_facts()
    assert len(facts) == 40 and sum(f.answer for f in facts) == 20 and len({f.group for f in facts}) == 40
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Sky?", "choices": ["red", "blue"], "answer": "blue"}\n'
                    '{"question": "Grass?", "choices": ["green", "red"], "answer": 0, "level": 2}\n')
    items = read_items(path)
    assert [(i.answer, i.level, i.source) for i in items] == [(1, 0, "user"), (0, 2, "user")]
    path.write_text('{"question": "Sky?", "choices": ["red", "blue"], "answer": "green"}\n')
    with pytest.raises(ValueError, match="not one of the choices"):
        read_items(path)


ITEM = Item("What is 2 + 5?", ("6", "7"), 1, "arithmetic", 1, "arith:2,5")


def test_keep_reading_asks_keep_or_withdraw_after_the_models_answer_and_reads_those_tokens(tiny_gemma):
    text, options = render(tiny_gemma, ITEM, "keep", letter=0, n_shots=1)
    assert text.endswith("Question: What is 2 + 5?\nA) 6\nB) 7\nAnswer: A\n"
                         "Keep your answer or withdraw it? Reply KEEP or WITHDRAW.\nDecision:")
    assert text.count("Question:") == 2  # one worked example, then the item
    ids, option_ids = option_reading(tiny_gemma, text, options)
    tok = tiny_gemma.tokenizer
    # Character tokens: " KEEP" / " WITHDRAW" share the space, so it is run and the options read after it.
    assert ids == tok(text + " ")["input_ids"]
    assert tok.convert_ids_to_tokens(option_ids) == ["K", "W"]
    read = read_battery(tiny_gemma, [ITEM], n_shots=1, progress=False)
    assert read.examples["keep"] == render(tiny_gemma, ITEM, "keep", int(read.choice[0]), 1)[0]
    ids, option_ids = option_reading(tiny_gemma, read.examples["keep"], options)
    with torch.no_grad():
        logits = tiny_gemma.hf(torch.tensor([ids])).logits[0, -1]
    expected = logits[option_ids].softmax(-1).numpy()
    np.testing.assert_allclose(read.probs["keep"][0], expected, rtol=1e-4)
    assert read.score("keep")[0] == pytest.approx(expected[0])  # P(KEEP), the first option


def test_chat_model_gets_its_template_and_its_own_answer_as_the_assistant_turn(tiny_llama):
    text, options = render(tiny_llama, ITEM, "bet", letter=1)
    assert text.startswith("<|user|>Answer with the letter") and "<|assistant|>B<eos><|user|>Bet on your answer?" in text
    assert text.endswith("Reply BET or PASS.<eos><|assistant|>") and options == ("BET", "PASS")
    _, option_ids = option_reading(tiny_llama, text, options)
    assert tiny_llama.tokenizer.convert_ids_to_tokens(option_ids) == ["B", "P"]
    digits = option_reading(tiny_llama, *render(tiny_llama, ITEM, "confidence", letter=1))[1]
    assert tiny_llama.tokenizer.convert_ids_to_tokens(digits) == list("0123456789")


def test_options_that_do_not_tokenise_apart_are_refused(tiny_gemma):
    with pytest.raises(ValueError, match="distinct tokens"):
        option_reading(tiny_gemma, "Decision:", (" KEEP", " KEEP"))


# --- the workflow ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atlas_run(tmp_path_factory):
    from metalens.testing import tiny_model

    out = tmp_path_factory.mktemp("atlas")
    return run_atlas([tiny_model("gemma3")], AtlasConfig(**SMALL), out=out, progress=False), out


def test_atlas_json_has_every_signal_with_its_interval_and_the_command(atlas_run):
    _, out = atlas_run
    data = json.loads((out / "atlas.json").read_text())
    assert data["command"].startswith("metalens atlas --model tiny-gemma3 --out ") and "--n-shots 1" in data["command"]
    (profile,) = data["models"]
    names = {s["name"]: s for s in profile["signals"]}
    assert {"answer probability", "verbal confidence", "keep/withdraw", "bet/pass", "correctness probe"} <= set(names)
    for s in profile["signals"]:
        assert {"name", "kind", "auroc", "auroc_low", "auroc_high"} <= set(s) and s["kind"] in ("behavioural", "internal")
    assert names["correctness probe"]["kind"] == "internal" and names["keep/withdraw"]["kind"] == "behavioural"
    assert {"estimate", "low", "high"} <= set(names["keep/withdraw"]["withdraw_delta"])
    assert {"estimate", "low", "high"} <= set(names["bet/pass"]["bet_delta"])
    assert {"estimate", "low", "high"} <= set(profile["gap"]) and profile["command"]
    assert {"accuracy", "low", "high", "by_difficulty"} <= set(profile["accuracy"])
    assert len(profile["items"]) == profile["n_items"] == 16
    assert "skipped" in profile["reward_head"]
    html = (out / "atlas.html").read_text()
    assert "Metacognitive atlas" in html and "href='models/tiny-gemma3/probe_sweep/report.html'" in html
    assert (out / "models" / "tiny-gemma3" / "probe_sweep" / "report.html").exists()


def test_atlas_round_trips_through_save_and_load(atlas_run, tmp_path):
    result, out = atlas_run
    loaded = AtlasResult.load(out)
    assert loaded.config == result.config and loaded.command == result.command
    assert json.dumps(loaded.models, sort_keys=True) == json.dumps(result.models, sort_keys=True)
    loaded.save(tmp_path)
    assert json.loads((tmp_path / "atlas.json").read_text()) == json.loads((out / "atlas.json").read_text())
    with pytest.raises(FileNotFoundError, match="metalens atlas"):
        AtlasResult.load(tmp_path / "nowhere")


def test_rerun_with_the_same_config_reuses_the_saved_profile_and_another_config_does_not(atlas_run, monkeypatch):
    from metalens.analyses import atlas as atlas_module
    from metalens.testing import tiny_model

    _, out = atlas_run
    calls = []
    monkeypatch.setattr(atlas_module, "model_profile", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        RuntimeError("recomputed")))
    again = run_atlas([tiny_model("gemma3")], AtlasConfig(**SMALL), out=out, progress=False)
    assert calls == [] and again.models[0]["n_items"] == 16
    with pytest.raises(RuntimeError, match="recomputed"):
        run_atlas([tiny_model("gemma3")], AtlasConfig(**{**SMALL, "seed": 1}), out=out, progress=False)
    # same config, other items (e.g. after a change in how items are built): recomputed too
    real_items = atlas_module.atlas_items
    monkeypatch.setattr(atlas_module, "atlas_items", lambda cfg, exclude=(): real_items(cfg, exclude)[::-1])
    with pytest.raises(RuntimeError, match="recomputed"):
        run_atlas([tiny_model("gemma3")], AtlasConfig(**SMALL), out=out, progress=False)


def test_command_names_the_options_that_differ_from_the_defaults():
    cmd = atlas_command(["a", "b"], AtlasConfig(n_facts=10, reporting=False, levels=(1, 2), heads={"a": "h"}), "OUT")
    assert cmd == "metalens atlas --model a --model b --out OUT --levels 1 2 --n-facts 10 --no-reporting --head a=h"


@pytest.fixture()
def saved_tiny(tmp_path):
    from metalens.testing import tiny_model

    model = tiny_model("gemma3", seed=4)
    model.hf.save_pretrained(tmp_path / "m")
    model.tokenizer.save_pretrained(tmp_path / "m")
    return str(tmp_path / "m")


def test_cli_writes_the_atlas_for_a_saved_model(saved_tiny, tmp_path, capsys):
    from metalens.analyses.cli import register

    parser = argparse.ArgumentParser(prog="metalens")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["atlas", "--model", saved_tiny, "--out", str(tmp_path / "out"), "--device", "cpu",
                              "--n-arithmetic", "8", "--n-facts", "8", "--n-shots", "1", "--n-boot", "50", "--cv", "3",
                              "--no-reporting"])
    args.func(args)
    data = json.loads((tmp_path / "out" / "atlas.json").read_text())
    assert data["models"][0]["model"] == saved_tiny and data["config"]["reporting"] is False
    assert data["command"] == (f"metalens atlas --model {saved_tiny} --out {tmp_path / 'out'} --n-arithmetic 8 "
                               "--n-facts 8 --n-shots 1 --cv 3 --n-boot 50 --no-reporting")
    assert "wrote" in capsys.readouterr().out and (tmp_path / "out" / "atlas.html").exists()


def test_cli_refuses_a_head_for_a_model_not_given_or_not_a_folder(tmp_path):
    from metalens.analyses.cli import _heads

    head = str(tmp_path)
    assert _heads(["m"], [head]) == {"m": head}
    with pytest.raises(ValueError, match="MODEL=DIR"):
        _heads(["a", "b"], [head])
    with pytest.raises(ValueError, match="not one of"):
        _heads(["a"], [f"c={head}"])
    with pytest.raises(ValueError, match="is not a folder"):
        _heads(["a"], [f"a={tmp_path / 'gone'}"])


def test_reward_head_is_read_when_given(tiny_gemma, tmp_path):
    from metalens.introspect import ReservedHead

    head = ReservedHead.from_model(tiny_gemma)
    head.weight[: head.spec.n_lengths] = -head.weight[head.spec.n_lengths:]  # anything: the head is only read
    head.save(tmp_path / "head")
    cfg = AtlasConfig(**{**SMALL, "reporting": False, "heads": {"tiny-gemma3": str(tmp_path / "head")}})
    result = run_atlas([tiny_gemma], cfg, progress=False)
    s = result.signal("tiny-gemma3", "reward head")
    assert s["kind"] == "internal" and 0 <= s["auroc"] <= 1
    p = [row["scores"]["reward head"] for row in result.models[0]["items"]]
    assert all(0 <= v <= 1 for v in p) and len(set(np.round(p, 6))) > 1


def test_chat_model_runs_the_whole_atlas_with_its_template(tiny_llama):
    result = run_atlas(tiny_llama, AtlasConfig(**{**SMALL, "reporting": False}), progress=False)
    profile = result.profile("tiny-llama")
    assert profile["examples"]["keep"].endswith("Reply KEEP or WITHDRAW.<eos><|assistant|>")
    assert "Question: What is 2 + 2?" not in profile["examples"]["answer"]  # chat models get no worked examples
    assert all(0 <= s["auroc"] <= 1 for s in profile["signals"] if s["auroc"] is not None and not np.isnan(s["auroc"]))


def test_option_reads_match_a_direct_softmax_over_the_final_logits(tiny_gemma):
    """read_options goes through metalens.next_token_logprobs; the numbers are those of one plain forward pass."""
    import torch

    from metalens.analyses.battery import option_reading, read_options, render

    items = arithmetic_items(5, (1, 2), seed=3)
    readings = [option_reading(tiny_gemma, *render(tiny_gemma, it, "answer")) for it in items]
    probs, mass, _ = read_options(tiny_gemma, readings, batch_size=2)
    for (ids, options), p, m in zip(readings, probs, mass):
        with torch.no_grad():
            logits = tiny_gemma.hf(torch.tensor([ids])).logits[0, -1].float()
        logp = logits.log_softmax(-1)[options]
        np.testing.assert_allclose(p, logp.softmax(-1).numpy(), rtol=1e-5, atol=1e-6)
        assert m == pytest.approx(float(logp.exp().sum()), rel=1e-5)


# --- items apart from post-training problems ------------------------------------------------------


def test_training_problems_replays_the_problems_a_run_trained_on(monkeypatch, tmp_path):
    """The replay is the run's own sampler: it lists exactly the batches `run_posttrain` trained on."""
    from metalens.analyses import posttrain as posttrain_module
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain, training_problems
    from metalens.testing import tiny_model

    seen = []
    monkeypatch.setattr(posttrain_module, "sft_step", lambda model, batch, opt: seen.extend(batch) or 0.0)
    cfg = PosttrainConfig(steps=5, save_every=5, batch_size=3, n_eval=4, max_new_tokens=2, levels=(1, 2),
                          checkpoint_accuracy=False, merge_final=False, seed=3)
    run_posttrain(tiny_model("gemma3"), cfg, progress=False)
    assert [p.question for p in seen] == [p.question for p in training_problems(cfg)]
    assert [p.question for p in training_problems(cfg, 2)] == [p.question for p in seen[:6]]


@pytest.fixture(scope="module")
def posttrain_folder(tmp_path_factory):
    """A real `metalens posttrain` final model, trained on many level-1 problems (81 exist)."""
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain
    from metalens.testing import tiny_model

    out = tmp_path_factory.mktemp("posttrain")
    cfg = PosttrainConfig(steps=6, save_every=6, batch_size=8, n_eval=2, max_new_tokens=2, levels=(1,),
                          checkpoint_accuracy=False)
    run_posttrain(tiny_model("gemma3"), cfg, out=out, progress=False)
    return str(out / "final")


def test_atlas_of_a_posttrain_folder_asks_none_of_its_training_problems(posttrain_folder):
    from metalens.analyses.atlas_config import ARITHMETIC_SEED
    from metalens.analyses.overlap import posttrain_questions

    trained = posttrain_questions(posttrain_folder)["questions"]
    cfg = AtlasConfig(**{**SMALL, "levels": (1,), "reporting": False})
    unchecked = arithmetic_items(cfg.n_arithmetic, cfg.levels, ARITHMETIC_SEED + cfg.seed)
    would_overlap = sum(it.question[8:-1] in trained for it in unchecked)
    assert would_overlap >= 2  # without the check the draw would ask training problems
    result = run_atlas([posttrain_folder], cfg, progress=False)
    asked = [row["question"][8:-1] for row in result.models[0]["items"] if row["source"] == "arithmetic"]
    assert len(asked) == 8 and not set(asked) & trained
    record = result.training_overlap
    assert record["n_excluded_overlap"] == would_overlap and record["n_overlap_left"] == 0
    assert record["posttrain_runs"][0]["n_problems"] == 48 and record["not_posttrain_folders"] == []
    assert sum(it.answer for it in atlas_items_of(cfg, trained)) == 4  # still balanced within the level


def atlas_items_of(cfg, exclude):
    from metalens.analyses.atlas import atlas_items

    return [it for it in atlas_items(cfg, exclude) if it.source == "arithmetic"]


def test_a_posttrain_record_that_cannot_be_replayed_is_refused_and_other_folders_are_unchecked(tmp_path):
    from metalens.analyses.overlap import training_overlap
    from metalens.checkpoints import META_FILE

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / META_FILE).write_text(json.dumps({"config": {"steps": "many"}, "heldout": {}}))
    with pytest.raises(ValueError, match="cannot replay"):
        training_overlap([str(tmp_path / "run")])
    exclude, record = training_overlap(["gemma-3-270m", str(tmp_path)])
    assert exclude == set() and record["not_posttrain_folders"] == ["gemma-3-270m", str(tmp_path)]


# --- multiplicity and per-item readings -----------------------------------------------------------


def _profile(name, scores: dict, y, groups):
    rows = [{"item_id": f"{i:03d}-user", "group": str(g), "correct": bool(c),
             "scores": {k: float(v[i]) for k, v in scores.items()}} for i, (c, g) in enumerate(zip(y, groups))]
    signals = [{"name": k, "auroc": metacog.auroc_ci(y, v, n_boot=0).estimate} for k, v in scores.items()]
    for s in signals:
        ci = metacog.auroc_ci(y, scores[s["name"]], groups, n_boot=200)
        s.update(auroc_low=ci.low, auroc_high=ci.high)
    return {"model": name, "signals": signals, "items": rows}


def test_the_family_holm_adjusts_every_model_x_signal_and_calls_wide_nulls_inconclusive():
    from metalens.analyses.atlas_family import add_family, summary_lines
    from metalens.power import mde_auroc

    rng, y = _planted(80, seed=1)
    groups = np.arange(80)
    strong = {"strong": y + rng.random(80), "noise": rng.random(80)}
    profiles = [_profile("a", strong, y, groups)] + [_profile(m, {"noise": rng.random(80), "more": rng.random(80)},
                                                              y, groups) for m in ("b", "c")]
    family = add_family(profiles, n_boot=300)
    assert family["n_comparisons"] == 6 and family["family_level"] == pytest.approx(1 - 0.05 / 6)
    sig = {(p["model"], s["name"]): s for p in profiles for s in p["signals"]}
    s = sig[("a", "strong")]
    assert s["verdict"] == "above chance" and s["p_holm"] < 0.05 and s["p_holm"] >= s["p"]
    for key, s in sig.items():
        assert s["auroc_low_family"] <= s["auroc_low"] and s["auroc_high_family"] >= s["auroc_high"]
        assert s["mde"]["alpha"] == pytest.approx(0.05 / 6) and s["mde"]["n_pos"] + s["mde"]["n_neg"] == 80
        assert s["mde"]["value"] == pytest.approx(mde_auroc(s["mde"]["n_pos"], s["mde"]["n_neg"], 0.05 / 6, 0.8,
                                                            "two-sided"))
        if key != ("a", "strong"):  # 80 items cannot rule out AUROC 0.6 for a noise signal
            assert s["verdict"] == "inconclusive" and "cannot rule out AUROC up to" in s["reading"]
    text = "\n".join(summary_lines(profiles, family))
    assert text.startswith("6 comparisons (3 models") and "do not monitor" not in text


def test_items_jsonl_holds_every_reading_and_recomputes_each_auroc(atlas_run):
    from metalens.stats import auroc

    _, out = atlas_run
    data = json.loads((out / "atlas.json").read_text())
    assert data["per_item"]["file"] == "items.jsonl" and data["multiplicity"]["n_comparisons"] == 5
    assert data["training_overlap"]["n_excluded_overlap"] == 0 and data["training_overlap"]["n_overlap_left"] == 0
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == data["per_item"]["rows"] == 16 and len({r["item_id"] for r in rows}) == 16
    assert {"item_id", "model", "question", "choices", "answer", "choice", "correct", "scores"} <= set(rows[0])
    for s in data["models"][0]["signals"]:
        y = [r["correct"] for r in rows]
        assert auroc(y, [r["scores"][s["name"]] for r in rows]) == pytest.approx(s["auroc"])
        assert {"p", "p_holm", "n_comparisons", "auroc_low_family", "auroc_high_family", "mde", "reading"} <= set(s)
