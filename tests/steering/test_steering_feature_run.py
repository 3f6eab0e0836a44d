"""`run_steer_feature` and `metalens steer --sae`: a rule steered by one SAE feature beside its vector."""
from __future__ import annotations

import pytest
import torch

import metalens
from cli_checks import refused
from metalens.sae import SAE, save_saelens
from metalens.steering import FeatureSteerConfig, FeatureSteerResult, SteerConfig, run_steer, run_steer_feature
from metalens.steering.rules.library import pairs_for_rule

SITE = "blocks.1.hook_resid_post"
PROMPTS = ["Tell me about your day.", "What is your job like?", "Describe your town.", "Give me advice.",
           "Tell me a story.", "What are you reading?"]


def planted_sae(model, feature: int = 11, d_sae: int = 32) -> SAE:
    """A random SAE at block 1 whose `feature` reads the ocean pairs' mean difference there."""
    positive, negative, _ = pairs_for_rule("ocean")
    acts = metalens.capture(model, positive + negative, [SITE], positions="mean", progress=False,
                            dtype=torch.float32)[SITE]
    diff = acts[:len(positive)].mean(0) - acts[len(positive):].mean(0)
    gen = torch.Generator().manual_seed(0)
    sae = SAE(W_enc=torch.randn(64, d_sae, generator=gen) / 8, W_dec=torch.randn(d_sae, 64, generator=gen) / 8,
              b_enc=torch.zeros(d_sae), b_dec=torch.zeros(64), site=SITE, model=model.name)
    sae.W_enc[:, feature] = diff / diff.norm() * 10
    sae.W_dec[feature] = diff / diff.norm()
    return sae


@pytest.fixture(scope="module")
def sae_dir(tiny_gemma, tmp_path_factory):
    return save_saelens(planted_sae(tiny_gemma), tmp_path_factory.mktemp("sae") / "sae")


def test_the_planted_feature_is_chosen_and_every_arm_is_scored_on_the_same_test_prompts(tiny_gemma, sae_dir, tmp_path):
    config = FeatureSteerConfig("ocean", str(sae_dir), modes=("clamp", "add"), strengths=(1.0, 2.0),
                                vector_strengths=(1.0,), prompts=PROMPTS, n_select=2, max_new_tokens=3)
    result = run_steer_feature(tiny_gemma, config, out=tmp_path / "run", progress=False)
    assert result.feature == 11 and result.ranking[0]["feature"] == 11
    assert result.scale == pytest.approx(result.ranking[0]["max_positive"]) and result.scale > 0
    assert list(result.scores) == ["clamp", "add", "vector"]
    assert {s.n for s in result.scores.values()} == {result.unsteered.n} == {4}
    assert [p["comparison"] for p in result.paired] == ["clamp_minus_unsteered", "add_minus_unsteered",
                                                         "vector_minus_unsteered", "clamp_minus_add",
                                                         "clamp_minus_vector", "add_minus_vector"]
    assert all(p["p_holm"] >= p["p"] or p["p"] != p["p"] for p in result.paired)
    assert all(set(row) >= {"prompt", "unsteered", "clamp", "add", "vector"} for row in result.samples)
    back = FeatureSteerResult.load(tmp_path / "run")
    back.save(tmp_path / "again")
    assert (tmp_path / "again" / "results.json").read_text() == (tmp_path / "run" / "results.json").read_text()
    assert torch.equal(back.vector.directions[1], result.vector.directions[1])
    assert (tmp_path / "run" / "report.html").exists()


def test_the_chosen_feature_has_a_card_read_from_the_rule_pairs_alone(tiny_gemma, sae_dir, tmp_path):
    from metalens.sae import load_cards, load_sae, logit_effect

    marked = [p + " qq" for p in PROMPTS]  # a marker the prompts carry and the pairs do not
    config = FeatureSteerConfig("ocean", str(sae_dir), strengths=(1.0,), vector_strengths=(), prompts=marked,
                                n_select=2, max_new_tokens=2)
    result = run_steer_feature(tiny_gemma, config, out=tmp_path / "run", progress=False)
    positive, negative, _ = pairs_for_rule("ocean")
    texts = positive + negative
    [card] = result.cards
    assert card.feature == result.feature == 11 and result.to_dict()["cards"]["features"] == [11]
    effect = logit_effect(tiny_gemma, load_sae(sae_dir), [11])[0]  # [vocab]
    top = effect.topk(len(card.top_tokens))
    assert [t["id"] for t in card.top_tokens] == top.indices.tolist()
    assert [t["value"] for t in card.top_tokens] == pytest.approx(top.values.tolist(), rel=1e-5, abs=1e-6)
    tok, bos = tiny_gemma.tokenizer, tiny_gemma.tokenizer.bos_token_id
    ids = tok(texts)["input_ids"]
    assert card.n_tokens == sum(len(row) - (bos is not None and row[0] == bos) for row in ids)  # pairs, no prompt
    assert card.contexts and all(tok.decode([ids[c["text"]][c["position"]]]) == c["token"] for c in card.contexts)
    assert not any("qq" in "".join(c["left"] + [c["token"]] + c["right"]) for c in card.contexts)
    assert card.max_activation == pytest.approx(result.scale)  # the 'max' unit: its largest on a positive text
    assert [c.to_dict() for c in load_cards(tmp_path / "run" / "cards.json")] == [card.to_dict()]
    assert "Feature 11: card" in (tmp_path / "run" / "report.html").read_text()
    assert FeatureSteerResult.load(tmp_path / "run").cards[0].to_dict() == card.to_dict()


def test_the_cli_writes_the_card_unless_told_not_to(tiny_gemma, sae_dir, tmp_path, monkeypatch):
    import json

    from metalens.cli import main

    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: tiny_gemma)
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    argv = ["steer", "--model", "tiny", "--rule", "ocean", "--sae", str(sae_dir), "--no-vector", "--strengths", "1",
            "--prompts", str(tmp_path / "prompts.txt"), "--n-select", "2", "--max-new-tokens", "2"]
    assert main([*argv, "--out", str(tmp_path / "on")]) == 0 and main([*argv, "--no-cards", "--out", str(tmp_path / "off")]) == 0
    assert json.loads((tmp_path / "on" / "results.json").read_text())["cards"]["features"] == [11]
    assert json.loads((tmp_path / "off" / "results.json").read_text())["cards"] is None
    assert (tmp_path / "on" / "cards.json").exists() and not (tmp_path / "off" / "cards.json").exists()


def test_the_vector_arm_scores_as_run_steer_scores_the_same_vector(tiny_gemma, sae_dir):
    common = dict(prompts=PROMPTS, n_select=2, max_new_tokens=3)
    feature = run_steer_feature(tiny_gemma, FeatureSteerConfig("ocean", str(sae_dir), vector_strengths=(2.0,),
                                                               strengths=(1.0,), **common), progress=False)
    vector = run_steer(tiny_gemma, SteerConfig("ocean", layers=[1], strengths=(2.0,), **common), progress=False)
    assert feature.scores["vector"] == vector.steered and feature.unsteered == vector.unsteered
    assert [s["vector"] for s in feature.samples] == [s["steered"] for s in vector.samples]


def test_a_feature_that_never_fires_on_the_positive_texts_has_no_max_unit(tiny_gemma, tmp_path):
    sae = planted_sae(tiny_gemma)
    sae.b_enc[3] = -1e4
    folder = save_saelens(sae, tmp_path / "sae")
    config = FeatureSteerConfig("ocean", str(folder), feature=3, vector_strengths=(), prompts=PROMPTS, n_select=2,
                                max_new_tokens=2)
    with pytest.raises(ValueError, match="never fires.*unit='activation'"):
        run_steer_feature(tiny_gemma, config, progress=False)


def test_the_cli_refuses_a_feature_out_of_range_before_the_model_loads(sae_dir, tmp_path, capsys, no_model):
    err = refused(["steer", "--rule", "ocean", "--sae", str(sae_dir), "--feature", "32", "--out",
                   str(tmp_path / "out")], capsys)
    assert "Feature 32 is out of range" in err and "0-31" in err
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_an_sae_for_another_site_naming_the_folder(tiny_gemma, tmp_path, capsys, monkeypatch):
    sae = planted_sae(tiny_gemma)
    sae.site = "blocks.7.hook_resid_post"  # the tiny model has blocks 0-2
    folder = save_saelens(sae, tmp_path / "sae")
    monkeypatch.setattr(metalens, "load_model", lambda *a, **kw: tiny_gemma)
    err = refused(["steer", "--rule", "ocean", "--sae", str(folder), "--out", str(tmp_path / "out")], capsys)
    assert str(folder) in err and "blocks.7.hook_resid_post" in err and "blocks 0-2" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_the_cli_refuses_an_sae_of_another_width(tiny_gemma, tmp_path, capsys, monkeypatch):
    wide = SAE(W_enc=torch.zeros(128, 4), W_dec=torch.zeros(4, 128), b_enc=torch.zeros(4), b_dec=torch.zeros(128),
               site=SITE)
    folder = save_saelens(wide, tmp_path / "wide")
    monkeypatch.setattr(metalens, "load_model", lambda *a, **kw: tiny_gemma)
    err = refused(["steer", "--rule", "ocean", "--sae", str(folder), "--out", str(tmp_path / "out")], capsys)
    assert "width 64" in err and "d_in is 128" in err


@pytest.mark.parametrize("argv, says", [
    (["--feature", "3"], "--feature steer by an SAE feature: add --sae"),
    (["--feature-mode", "add"], "--feature-mode steer by an SAE feature"),
    (["--no-cards"], "--no-cards steer by an SAE feature"),
    (["--sae", "{sae}", "--rounds", "1"], "--rounds belong to vector steering"),
    (["--sae", "{sae}", "--layers", "1"], "--layers belong to vector steering"),
    (["--sae", "{sae}", "--no-vector", "--vector-strengths", "1"], "give one of them"),
])
def test_the_cli_refuses_flags_of_the_other_kind_of_steering(argv, says, sae_dir, tmp_path, capsys, no_model):
    argv = [a.replace("{sae}", str(sae_dir)) for a in argv]
    err = refused(["steer", "--rule", "ocean", *argv, "--out", str(tmp_path / "out")], capsys)
    assert says in err
