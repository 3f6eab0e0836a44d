"""SAE features as neurofeedback axes: the encoder read, selection on the fit split alone, the site
check, and the CLI flags."""
import json

import pytest
import torch

import metalens
from metalens.probes import NeurofeedbackConfig, run_neurofeedback
from metalens.probes.directions import fit_axes
from metalens.probes.features import join_axes, parse_feature_spec, sae_axes, select_features
from metalens.probes.neurofeedback import prepare_data
from metalens.sae import SAE
from metalens.sites import resid_post

LAYER = 1
SITE = resid_post(LAYER)
SMALL = dict(layer=LAYER, max_sentences=40, pcs=(1, 2), n_values=(0, 1, 2), draws=2, n_test_min=1, control_examples=2,
             implicit_trials=2, explicit_trials=1, max_new_tokens=3, implicit_targets=None, explicit_targets=())


def random_sae(d_in=64, d_sae=24, seed=0, site=SITE, **kw) -> SAE:
    gen = torch.Generator().manual_seed(seed)
    return SAE(W_enc=torch.randn(d_in, d_sae, generator=gen) / 4, W_dec=torch.randn(d_sae, d_in, generator=gen),
               b_enc=torch.randn(d_sae, generator=gen) / 8, b_dec=torch.randn(d_in, generator=gen) / 8, site=site, **kw)


def fit_split(model, cfg):
    ds, fit, pool, _ = prepare_data(cfg, model.d_model)
    acts = metalens.capture(model, ds.texts, [SITE], positions="mean", progress=False)[SITE].float()
    return ds, fit, pool, acts


@pytest.fixture(scope="module")
def pc_sae_run(tiny_llama, tmp_path_factory):
    """A run whose SAE's feature 3 reads along the fit split's PC1 (its decoder row points elsewhere)."""
    cfg = NeurofeedbackConfig(**SMALL, logistic_axis=False)
    _, fit, _, acts = fit_split(tiny_llama, cfg)
    pc1 = fit_axes(acts[fit], None, (1, 2), logistic=False).directions  # [2, d_model]: PC1, PC2
    sae = random_sae()
    sae.W_enc[:, 3] = 2.5 * pc1[0]  # encoder: PC1 (scaled; the axis is unit-normalised)
    sae.W_dec[3] = pc1[1]  # decoder: PC2, so an axis built from the decoder would be PC2's
    folder = sae.save(tmp_path_factory.mktemp("sae") / "sae")
    out = tmp_path_factory.mktemp("nf-sae")
    result = run_neurofeedback(tiny_llama, NeurofeedbackConfig(**SMALL, logistic_axis=False, sae=folder,
                                                               sae_features="3,active:2"), out=out, progress=False)
    return result, out, folder


def test_feature_axis_reads_the_encoder_and_equals_the_pc_axis_it_points_along(pc_sae_run, tiny_llama):
    result, _, _ = pc_sae_run
    axes = result.axes
    pc1, f3 = axes.index("PC1"), axes.index("F3")
    torch.testing.assert_close(axes.directions[f3], axes.directions[pc1], atol=1e-6, rtol=0)
    torch.testing.assert_close(axes.thresholds[f3], axes.thresholds[pc1], atol=1e-5, rtol=0)
    pool = result.data["data"]["pool_indices"]
    ds, _, _, acts = fit_split(tiny_llama, NeurofeedbackConfig(**SMALL))
    pool_labels = axes.labels(acts[pool]).numpy()
    assert (pool_labels[:, f3] == pool_labels[:, pc1]).all() and 0 < pool_labels[:, f3].mean() < 1
    assert result.data["data"]["pool_label_balance"]["F3"] == result.data["data"]["pool_label_balance"]["PC1"]
    # The projection is the feature's pre-activation, shifted to the fit mean and divided by |encoder column|.
    sae = metalens.sae.load_sae(pc_sae_run[2])
    info = next(r for r in axes.metadata["sae"]["features"] if r["feature"] == 3)
    pre = sae.pre_acts(acts[pool])[:, 3]
    torch.testing.assert_close(axes.project(acts[pool])[:, f3] * info["encoder_norm"] + info["pre_at_center"], pre,
                               atol=1e-4, rtol=1e-4)


def test_feature_axes_share_the_reporting_tests_and_holm_family(pc_sae_run):
    result, out, folder = pc_sae_run
    data = json.loads((out / "results.json").read_text())
    names = data["axes"]["names"]
    assert names[:2] == ["PC1", "PC2"] and "F3" in names and len(names) == 5  # F3, then two by activity
    assert [r["axis"] for r in data["reporting"]["tests"]] == names
    assert {r["n_comparisons"] for r in data["reporting"]["tests"]} == {5}
    assert all("surface_accuracy" in r and "others_accuracy" in r for r in data["reporting"]["tests"])
    assert [e["target"] for e in data["implicit"]["effects"]] == names
    sae = data["axes"]["sae"]
    assert sae["path"] == str(folder) and sae["site"] == SITE and sae["selection"] == "3,active:2"
    assert [(r["axis"], r["selected_by"]) for r in sae["features"]][0] == ("F3", "3")
    assert [r["selected_by"] for r in sae["features"]][1:] == ["active:2", "active:2"]
    html = (out / "report.html").read_text()
    assert "SAE feature axes" in html and str(folder) in html and "active:2" in html


def test_selection_ranks_features_by_the_rule_and_skips_taken_and_silent_ones():
    f = torch.zeros(6, 5)
    f[:, 1] = torch.tensor([1.0, 1, 1, 1, 1, 1])  # highest mean, no variance
    f[:, 2] = torch.tensor([0.0, 3, 0, 3, 0, 0])  # most variable
    f[:, 4] = torch.tensor([0.5, 0.5, 0.6, 0.4, 0.5, 0.5])
    assert select_features(f, "active:2") == [(1, "active:2"), (2, "active:2")]
    assert select_features(f, "variable:1,active:2") == [(2, "variable:1"), (1, "active:2"), (4, "active:2")]
    assert select_features(f, "1,active:1") == [(1, "1"), (2, "active:1")]
    with pytest.raises(ValueError, match="only 3 more fire"):  # features 0 and 3 never fire
        select_features(f, "active:4")
    with pytest.raises(ValueError, match="features 0-4"):
        select_features(f, "7")


def test_selection_sees_the_fit_split_only(tiny_llama):
    cfg = NeurofeedbackConfig(**SMALL)
    ds, fit, pool, acts = fit_split(tiny_llama, cfg)
    sae = random_sae(seed=1)
    feats = sae.encode(acts)  # [n, d_sae]; any per-sentence activations do
    spec = "active:3,variable:3"
    loud = feats.clone()
    loud[pool] = 0
    loud[pool, 5] = 100.0  # a feature that only the tested sentences light up
    assert select_features(loud, spec) != select_features(feats, spec)  # the pool would change an all-rows choice
    a = sae_axes(sae, acts[fit], feats[fit], spec)
    b = sae_axes(sae, acts[fit], loud[fit], spec)  # same fit rows, other pool rows: nothing may change
    assert a.names == b.names and torch.equal(a.thresholds, b.thresholds) and torch.equal(a.directions, b.directions)
    with pytest.raises(ValueError, match=r"feature_acts_fit must be \[\d+, 24\]"):
        sae_axes(sae, acts[fit], feats, spec)  # all rows passed where the fit rows belong


def test_a_run_selects_on_the_fit_rows_whatever_the_pool_sentences_are(tiny_llama, tmp_path):
    """Two datasets with the same labels, groups and fit sentences but other pool sentences select
    the same features with the same medians."""
    cfg = NeurofeedbackConfig(**SMALL)
    ds, fit, pool, _ = prepare_data(cfg)
    rows = [{"text": t, "label": int(y), "group": g} for t, y, g in zip(ds.texts, ds.labels, ds.groups)]
    other = [dict(r, text=("zz qq xx " * 6) + str(i)) if i in set(pool.tolist()) else r for i, r in enumerate(rows)]
    files = []
    for name, data in (("a.jsonl", rows), ("b.jsonl", other)):
        files.append(tmp_path / name)
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in data))
    folder = random_sae(seed=2).save(tmp_path / "sae")
    axes = []
    for file in files:
        run = NeurofeedbackConfig(**{**SMALL, "max_sentences": None, "dataset": file, "implicit_targets": ("PC1",)},
                                  sae=folder, sae_features="variable:3")
        assert prepare_data(run)[1].tolist() == fit.tolist()
        axes.append(run_neurofeedback(tiny_llama, run, progress=False).axes)
    assert axes[0].names == axes[1].names
    f = [axes[0].index(n) for n in axes[0].names if n.startswith("F")]
    torch.testing.assert_close(axes[0].thresholds[f], axes[1].thresholds[f])


def test_an_sae_from_another_layer_is_refused_with_the_layer_to_use(tmp_path, tiny_llama):
    folder = random_sae(site="blocks.2.hook_resid_post").save(tmp_path / "sae")
    with pytest.raises(ValueError, match=r"reads 'blocks.2.hook_resid_post'.*layer 1 reads 'blocks.1.hook_resid_post'"
                                         r".*--layers 2"):
        prepare_data(NeurofeedbackConfig(**SMALL, sae=folder))
    with pytest.raises(ValueError, match="--layers 2"):
        run_neurofeedback(tiny_llama, NeurofeedbackConfig(**SMALL, sae=folder), progress=False)
    pre = random_sae(site="blocks.2.hook_resid_pre").save(tmp_path / "pre")  # the same stream as blocks.1 post
    prepare_data(NeurofeedbackConfig(**SMALL, sae=pre))
    mlp = random_sae(site="blocks.1.hook_mlp_out").save(tmp_path / "mlp")
    with pytest.raises(ValueError, match=r"reads the residual stream 'blocks.1.hook_resid_post': pass an SAE trained"):
        prepare_data(NeurofeedbackConfig(**SMALL, sae=mlp))


def test_bad_specs_and_the_paper_protocol_are_refused():
    assert parse_feature_spec("active:8, variable:8,17") == [("active", 8), ("variable", 8), ("index", 17)]
    for spec, match in (("busy:3", "RULE:K"), ("active:0", "RULE:K"), ("F17", "neither"), ("", "names no feature"),
                        ("3,3", "repeats")):
        with pytest.raises(ValueError, match=match):
            parse_feature_spec(spec)
    with pytest.raises(ValueError, match="strict protocol"):
        NeurofeedbackConfig(sae="x", protocol="paper")
    with pytest.raises(ValueError, match=r"\['G17'\].*SAE features \(F17"):
        prepare_data(NeurofeedbackConfig(**{**SMALL, "implicit_targets": ("G17",)}, sae="unchecked-before-the-targets"))


def test_join_refuses_axes_fitted_on_other_sentences(tiny_llama):
    _, fit, pool, acts = fit_split(tiny_llama, NeurofeedbackConfig(**SMALL))
    sae = random_sae()
    feats = sae.encode(acts)
    pcs = fit_axes(acts[fit], None, (1,), logistic=False)
    joined = join_axes(pcs, sae_axes(sae, acts[fit], feats[fit], "active:2"))
    assert joined.labels(acts[pool], levels=3).shape == (len(pool), 3)  # per-level quantiles joined axis by axis
    with pytest.raises(ValueError, match="centers differ"):
        join_axes(pcs, sae_axes(sae, acts[pool], feats[pool], "active:2"))


def test_cli_parses_the_sae_flags_into_the_config(tmp_path):
    from metalens.cli import build_parser
    from metalens.probes.cli import neurofeedback_config

    folder = random_sae().save(tmp_path / "sae")
    parser = build_parser()
    args = parser.parse_args(["neurofeedback", "--model", "x", "--out", "o", "--layers", "1", "--sae", str(folder),
                              "--sae-features", "active:16,5"])
    cfg = neurofeedback_config(args)
    assert str(cfg.sae) == str(folder) and cfg.sae_features == "active:16,5" and cfg.layer == 1
    assert neurofeedback_config(parser.parse_args(["neurofeedback", "--model", "x", "--out", "o", "--sae",
                                                   str(folder)])).sae_features == "active:8,variable:8"
    with pytest.raises(SystemExit):
        parser.parse_args(["neurofeedback", "--model", "x", "--out", "o", "--sae", str(folder), "--sae-features", "top:3"])
    with pytest.raises(SystemExit):
        parser.parse_args(["neurofeedback", "--model", "x", "--out", "o", "--sae", str(tmp_path / "none")])
    with pytest.raises(ValueError, match="needs --sae DIR"):
        neurofeedback_config(parser.parse_args(["neurofeedback", "--model", "x", "--out", "o", "--sae-features", "3"]))


def test_cli_runs_feature_axes_and_refuses_another_layer_before_loading_the_model(monkeypatch, tmp_path, tiny_llama,
                                                                                  capsys):
    from metalens.cli import main

    folder = random_sae().save(tmp_path / "sae")
    loaded = []
    monkeypatch.setattr(metalens, "load_model", lambda name, device=None, dtype=None: loaded.append(name) or tiny_llama)
    small = ["--model", "tiny", "--quick", "--max-sentences", "40", "--pcs", "1", "--n-values", "0,1,2", "--draws", "2",
             "--control-examples", "2", "--implicit-trials", "2", "--explicit-targets", "", "--sae", str(folder)]
    assert main(["neurofeedback", *small, "--layers", "2", "--out", str(tmp_path / "bad")]) != 0
    assert "--layers 1" in capsys.readouterr().err and not loaded
    assert main(["neurofeedback", *small, "--layers", "1", "--sae-features", "variable:2", "--out", str(tmp_path / "ok")]) == 0
    data = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert [n[0] for n in data["axes"]["names"]] == ["P", "L", "F", "F"]
    assert data["axes"]["sae"]["selection"] == "variable:2" and data["axes"]["sae"]["path"] == str(folder)


def _scored_tokens(model, texts) -> int:
    """Tokens a card scores over `texts`: every token but a leading BOS."""
    bos = model.tokenizer.bos_token_id
    return sum(len(ids) - (bos is not None and ids[0] == bos) for ids in model.tokenizer(texts)["input_ids"])


def test_every_feature_axis_has_a_card_read_from_the_fit_split_with_the_unembedding_logit_effect(pc_sae_run, tiny_llama):
    from metalens.sae.cards import load_cards, logit_effect

    result, out, folder = pc_sae_run
    data = json.loads((out / "results.json").read_text())
    features = [int(n[1:]) for n in data["axes"]["names"] if n.startswith("F")]
    assert data["cards"]["features"] == features == [c.feature for c in load_cards(out / "cards.json")]
    html = (out / "report.html").read_text()
    assert all(f"Feature card: F{f} " in html for f in features)
    fit, pool = data["data"]["fit_indices"], data["data"]["pool_indices"]
    rows = data["cards"]["dataset_indices"]
    assert rows == fit  # fewer fit sentences than card_texts (200): all of them, none tested
    ds, _, _, _ = prepare_data(NeurofeedbackConfig(**SMALL), tiny_llama.d_model)
    texts = [ds.texts[i] for i in rows]
    sae = metalens.sae.load_sae(folder)
    effect = logit_effect(tiny_llama, sae, features)  # [n_features, vocab]
    tok = tiny_llama.tokenizer
    for j, card in enumerate(result.cards):
        assert card.n_tokens == _scored_tokens(tiny_llama, texts)
        top = effect[j].topk(len(card.top_tokens))
        assert [t["id"] for t in card.top_tokens] == top.indices.tolist()
        assert [t["value"] for t in card.top_tokens] == pytest.approx(top.values.tolist(), rel=1e-5, abs=1e-6)
        assert card.contexts, f"F{card.feature} fires on no fit-split token"
        for c in card.contexts:  # each context's token is that fit sentence's token at that position
            assert rows[c["text"]] in fit and rows[c["text"]] not in pool
            assert tok.decode([tok(texts[c["text"]])["input_ids"][c["position"]]]) == c["token"]
    back = type(result).load(out)
    assert [c.to_dict() for c in back.cards] == [c.to_dict() for c in result.cards]


def test_no_sentence_outside_the_cards_texts_reaches_a_card(tiny_llama, tmp_path):
    """Two datasets alike but for their pool sentences (one full of a marker) give the same cards, none
    showing the marker; `card_texts` caps the fit sentences read."""
    cfg = NeurofeedbackConfig(**SMALL)
    ds, fit, pool, _ = prepare_data(cfg)
    rows = [{"text": t, "label": int(y), "group": g} for t, y, g in zip(ds.texts, ds.labels, ds.groups)]
    marked = [dict(r, text=("zz qq xx " * 6) + str(i)) if i in set(pool.tolist()) else r for i, r in enumerate(rows)]
    folder = random_sae(seed=2).save(tmp_path / "sae")
    runs = []
    for name, data in (("a.jsonl", rows), ("b.jsonl", marked)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in data))
        run = NeurofeedbackConfig(**{**SMALL, "max_sentences": None, "dataset": tmp_path / name, "implicit_targets":
                                     ("PC1",)}, sae=folder, sae_features="active:3", card_texts=7)
        runs.append(run_neurofeedback(tiny_llama, run, progress=False))
    a, b = runs
    assert a.data["cards"]["dataset_indices"] == fit[:7].tolist() == b.data["cards"]["dataset_indices"]
    same = [[{k: v for k, v in c.to_dict().items() if k != "corpus"} for c in run.cards] for run in runs]  # corpus: its name
    assert len(a.cards) == 3 and same[0] == same[1]
    assert a.cards[0].n_tokens == _scored_tokens(tiny_llama, [ds.texts[i] for i in fit[:7]])
    shown = " ".join("".join(c["left"] + [c["token"]] + c["right"]) for card in b.cards for c in card.contexts)
    assert shown and "qq" not in shown


def test_cards_can_be_turned_off_and_their_flags_need_an_sae(tiny_llama, tmp_path):
    from metalens.cli import build_parser
    from metalens.probes.cli import neurofeedback_config

    folder = random_sae().save(tmp_path / "sae")
    parser = build_parser()
    base = ["neurofeedback", "--model", "x", "--out", "o"]
    cfg = neurofeedback_config(parser.parse_args([*base, "--sae", str(folder), "--card-texts", "50"]))
    assert cfg.cards and cfg.card_texts == 50
    assert not neurofeedback_config(parser.parse_args([*base, "--sae", str(folder), "--no-cards"])).cards
    for flags in (["--no-cards"], ["--card-texts", "5"]):
        with pytest.raises(ValueError, match="add --sae DIR"):
            neurofeedback_config(parser.parse_args([*base, *flags]))
    result = run_neurofeedback(tiny_llama, NeurofeedbackConfig(**SMALL, sae=folder, sae_features="active:2", cards=False),
                               out=tmp_path / "run", progress=False)
    assert result.cards == [] and result.data["cards"] is None and not (tmp_path / "run" / "cards.json").exists()
    assert "Feature card" not in (tmp_path / "run" / "report.html").read_text()
