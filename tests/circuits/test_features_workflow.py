"""`run_features` / `metalens features`: top features by attribution, the exact check, intervals, cards, files."""
from __future__ import annotations

import json
import math

import pytest
import torch

from metalens.circuits import FeaturesConfig, FeaturesResult, patch_features_exact, patch_site_exact, run_features
from metalens.circuits.tasks import induction_task
from metalens.sae import SAE
from tests.cli_checks import refused

SITE = "blocks.1.hook_resid_post"
CORPUS = ["The cat sat on the mat.", "A quick brown fox jumps over it.", "Hello there, how are you?",
          "Numbers 1 2 3 4 and 5.", "Some more words to read here."]


def random_sae(d_in=64, d_sae=32, seed=0, site=SITE) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen) / 4, W_dec=torch.randn(d_sae, d_in, generator=gen) / 4,
               b_enc=torch.randn(d_sae, generator=gen) / 8, b_dec=torch.zeros(d_in), site=site)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n")
    return str(path)


@pytest.fixture
def result(tiny_gemma, corpus, tmp_path):
    task = induction_task(tiny_gemma.tokenizer, n=12)
    cfg = FeaturesConfig(task=task, top=4, n_boot=200, data=corpus, n_contexts=3)
    return run_features(tiny_gemma, random_sae(), cfg, out=tmp_path / "out", progress=False)


def test_top_features_are_the_largest_mean_attributions_and_their_exact_check_is_exact_patching(tiny_gemma, result):
    mean = result.attribution.mean(0)
    assert result.top_features == mean.abs().topk(4).indices.tolist()
    checked = result.top_features + result.controls
    direct = patch_features_exact(tiny_gemma, result.task, random_sae(), checked)
    torch.testing.assert_close(result.exact, direct)
    assert [r["role"] for r in result.rows] == ["top"] * 4 + ["control"] * len(result.controls)
    for j, row in enumerate(result.rows):
        assert row["feature"] == checked[j]
        assert row["attribution"]["mean"] == pytest.approx(float(mean[row["feature"]]), rel=1e-5)
        assert row["exact"]["mean"] == pytest.approx(float(direct[:, j].mean()), rel=1e-5)
        for key in ("attribution", "exact"):  # 12 pairs: bootstrap bounds around the mean
            ci = row[key]
            assert ci["n"] == 12 and ci["low"] <= ci["mean"] <= ci["high"] and ci["low"] < ci["high"]


def test_controls_are_other_features_the_corruption_moves(result):
    moved = (result.f_clean - result.f_corrupted).abs().sum(0) > 0
    assert len(result.controls) == 5 and not set(result.controls) & set(result.top_features)
    assert all(moved[i] for i in result.controls)


def test_totals_are_the_whole_sites_patch_and_the_scores_sums(tiny_gemma, result):
    torch.testing.assert_close(result.site_total, patch_site_exact(tiny_gemma, result.task, random_sae()))
    t = result.totals
    assert t["site_total"]["mean"] == pytest.approx(float(result.site_total.mean()), rel=1e-5)
    assert t["features_sum"]["mean"] == pytest.approx(float(result.attribution.sum(1).mean()), rel=1e-5)
    assert t["error"]["mean"] == pytest.approx(float(result.error.mean()), rel=1e-5)


def test_ig_scores_add_up_to_the_whole_sites_effect(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=4)
    res = run_features(tiny_gemma, random_sae(), FeaturesConfig(task=task, method="ig", ig_steps=16, top=2, cards=False),
                       progress=False)
    torch.testing.assert_close(res.attribution.sum(1) + res.error, res.site_total, rtol=1e-2,
                               atol=1e-2 * float(res.site_total.abs().max()))
    assert res.metadata["method"] == "ig" and "ig" in res.seconds


def test_each_top_feature_gets_its_card_from_the_corpus(result, corpus):
    assert [c.feature for c in result.cards] == result.top_features
    assert all(c.corpus == corpus and c.site == SITE for c in result.cards)
    assert sum(c.n_tokens for c in result.cards[:1]) == sum(len(t) for t in CORPUS)  # characters, BOS left out


def test_saved_result_loads_back_with_its_cards_and_report(result, tmp_path):
    out = tmp_path / "out"
    loaded = FeaturesResult.load(out)
    torch.testing.assert_close(loaded.attribution, result.attribution)
    torch.testing.assert_close(loaded.exact, result.exact)
    torch.testing.assert_close(loaded.error, result.error)
    torch.testing.assert_close(loaded.site_total, result.site_total)
    assert loaded.totals == json.loads(json.dumps(result.totals))
    assert loaded.top_features == result.top_features and loaded.cards == result.cards
    assert loaded.rows == json.loads(json.dumps(result.rows))
    saved = json.loads((out / "results.json").read_text())
    assert saved["top_features"] == result.top_features and saved["metadata"]["site"] == SITE
    report = (out / "report.html").read_text()
    assert f"Feature {result.top_features[0]}: card" in report and "exact patching" in report


def test_fewer_than_ten_pairs_give_means_without_bounds(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=4)
    res = run_features(tiny_gemma, random_sae(), FeaturesConfig(task=task, top=2, cards=False), progress=False)
    assert all(math.isnan(r["attribution"]["low"]) and r["attribution"]["n"] == 4 for r in res.rows)
    assert res.cards == []


@pytest.mark.parametrize("fields, match", [({"metric": "kl"}, "zero gradient"), ({"method": "exact"}, "Unknown method"),
                                           ({"ig_steps": 0}, "ig_steps"), ({"top": 0}, "top")])
def test_bad_settings_are_refused_when_configuring(fields, match):
    with pytest.raises(ValueError, match=match):
        FeaturesConfig(**fields)


def test_features_verb_writes_results_cards_and_report(tmp_path, corpus, capsys):
    from metalens.cli import main

    random_sae().save(tmp_path / "sae")
    code = main(["features", "--model", "random:tiny-gemma3", "--device", "cpu", "--task", "induction", "--n", "3",
                 "--sae", str(tmp_path / "sae"), "--top", "3", "--data", corpus, "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0 and "Spearman" in printed and "feature " in printed and "whole site patched" in printed
    loaded = FeaturesResult.load(tmp_path / "out")
    assert len(loaded.top_features) == 3 and len(loaded.cards) == 3


def test_features_verb_refuses_an_sae_of_another_width_in_one_line(tmp_path, capsys):
    random_sae(d_in=32).save(tmp_path / "sae")
    err = refused(["features", "--model", "random:tiny-gemma3", "--device", "cpu", "--task", "induction", "--n", "2",
                   "--sae", str(tmp_path / "sae"), "--no-cards", "--out", str(tmp_path / "out")], capsys)
    assert "d_in is 32" in err and "another site or model" in err


@pytest.mark.parametrize("change, named", [
    ({"--sae": "{missing}"}, "--sae"),
    ({"--sae": "{empty_dir}"}, "{empty_dir}"),
    ({"--metric": "kl"}, "--metric"),
    ({"--top": "0"}, "--top"),
    ({"--task": "addition"}, "addition"),
])
def test_features_verb_refuses_bad_inputs_before_loading_the_model(tmp_path, capsys, no_model, change, named):
    (tmp_path / "empty").mkdir()
    random_sae().save(tmp_path / "sae")
    slots = {"{missing}": str(tmp_path / "nope"), "{empty_dir}": str(tmp_path / "empty")}
    args = {"--sae": str(tmp_path / "sae"), "--task": "induction", "--out": str(tmp_path / "out"),
            **{k: slots.get(v, v) for k, v in change.items()}}
    err = refused(["features", "--model", "random:tiny-gemma3", "--no-cards", *[x for kv in args.items() for x in kv]],
                  capsys)
    assert slots.get(named, named) in err
    assert not (tmp_path / "out").exists()
