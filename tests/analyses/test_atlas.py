"""The metacognitive atlas on tiny models: the battery's readings, atlas.json and items.jsonl, the CLI
(metrics: test_atlas_metrics.py; items apart from post-training: test_atlas_overlap.py)."""
import argparse
import json

import numpy as np
import pytest
import torch

from metalens.analyses.atlas import AtlasConfig, AtlasResult, atlas_command, run_atlas
from metalens.analyses.battery import Item, arithmetic_items, option_reading, read_battery, read_items, render
from tests.analyses.atlas_sizes import SMALL


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
