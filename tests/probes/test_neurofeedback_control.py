"""Control tasks: span means read the right tokens, and effect sizes come out per axis."""
import numpy as np
import pytest
import torch

from metalens.probes import fit_axes
from metalens.probes.control import measure_control, span_means
from metalens.probes.prompts import render

SENTS = ["I ran.", "I hid a cat.", "I ate.", "I sang a song.", "I slept.", "I swam far.", "I read.", "I dug."]


def test_span_means_average_the_sentence_tokens_of_the_residual_stream(tiny_llama):
    prompts = [render(tiny_llama, SENTS[:3], [0, 1, 0], "control"), render(tiny_llama, SENTS[3:5], [1, 1], "control")]
    got = span_means(tiny_llama, 1, prompts, item=-1, batch_size=2)
    for r, row in zip(prompts, got):
        with torch.no_grad():
            hidden = tiny_llama.hf(input_ids=torch.tensor([r.input_ids]), output_hidden_states=True).hidden_states
        a, b = r.sentence_spans[-1]
        assert torch.allclose(row, hidden[2][0, a:b].mean(0), atol=1e-4)  # hidden_states[L + 1] = blocks.L output


def test_implicit_control_measures_every_axis_for_each_target(tiny_gemma):
    rng = np.random.default_rng(0)
    acts = torch.tensor(rng.normal(size=(40, tiny_gemma.d_model)), dtype=torch.float32)
    axes = fit_axes(acts, rng.integers(0, 2, 40), pcs=(1, 2))
    labels = rng.integers(0, 2, (len(SENTS), len(axes.names)))
    res = measure_control(tiny_gemma, 1, axes, SENTS, labels, ["PC1", "LR"], n_examples=2, trials=3, progress=False)
    assert res.projections.shape == (2, 3, 2, 3) and np.isfinite(res.projections).all()
    # Implicit control reads the given sentence under both imposed labels.
    assert all(pair[0] == pair[1] for target in res.sentences for pair in target)
    eff = res.effects()
    assert [e["target"] for e in eff] == ["PC1", "LR"] and set(eff[0]["d_by_axis"]) == {"PC1", "PC2", "LR"}
    # Identical examples: the two imposed labels differ only in one label token, so something moves.
    assert not np.allclose(res.projections[:, :, 0], res.projections[:, :, 1])


def test_explicit_control_measures_what_the_model_writes_greedily(tiny_gemma):
    rng = np.random.default_rng(1)
    acts = torch.tensor(rng.normal(size=(40, tiny_gemma.d_model)), dtype=torch.float32)
    axes = fit_axes(acts, rng.integers(0, 2, 40), pcs=(1,))
    labels = rng.integers(0, 2, (len(SENTS), len(axes.names)))
    res = measure_control(tiny_gemma, 1, axes, SENTS, labels, ["LR"], kind="explicit", n_examples=2, trials=2,
                      max_new_tokens=4, seed=5, progress=False)
    # Redraw trial 0's examples with the same seed and decode each imposed label's prompt alone.
    idx = np.random.default_rng(5).choice(len(SENTS), 3, replace=False)
    ex_s, ex_l = [SENTS[i] for i in idx[:-1]], labels[idx[:-1], axes.index("LR")].tolist()
    for imposed in (0, 1):
        ids = torch.tensor([render(tiny_gemma, ex_s + [""], ex_l + [imposed], "control", open_last=True).input_ids])
        with torch.no_grad():
            out = tiny_gemma.hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                         do_sample=False, pad_token_id=tiny_gemma.tokenizer.pad_token_id)
        alone = tiny_gemma.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip().split("\n")[0].strip()
        assert res.sentences[0][0][imposed] == alone
        assert alone and np.isfinite(res.projections[0, 0, imposed]).all()
    assert res.metadata["max_new_tokens"] == 4


def planted_control(trials=12, seed=0):
    """Target axis A: a small but consistent shift (0.5 +- 0.05) on sentences that differ by sd 10,
    so the unpaired d is tiny and the paired d_z large. Axis B: a larger shift relative to its
    spread between sentences (sd 1) but inconsistent across trials (diff sd 2)."""
    from metalens.probes.control import ControlResult

    rng = np.random.default_rng(seed)
    proj = np.zeros((1, trials, 2, 2))
    base_a = rng.normal(size=trials) * 10
    proj[0, :, 0, 0] = base_a
    proj[0, :, 1, 0] = base_a + 0.5 + rng.normal(size=trials) * 0.05
    base_b = rng.normal(size=trials)
    proj[0, :, 0, 1] = base_b
    proj[0, :, 1, 1] = base_b + 0.8 + rng.normal(size=trials) * 2
    return ControlResult("implicit", ["A", "B"], ["A"], proj, [], "", {})


def test_control_effect_is_the_paired_dz_reported_as_a_shift_without_a_verdict():
    from metalens.stats import cohens_d

    res = planted_control()
    row = res.effects()[0]
    proj = res.projections[0]
    diff = proj[:, 1, 0] - proj[:, 0, 0]
    assert row["dz_target"] == pytest.approx(diff.mean() / diff.std(ddof=1)) == row["shift_dz"]
    assert row["dz_target"] > 5 and abs(row["d_target"]) < 0.2  # unpaired d misses what pairing shows
    assert row["d_target"] == pytest.approx(cohens_d(proj[:, 1, 0], proj[:, 0, 0]))
    assert row["d_by_axis"]["B"] > row["d_target"]  # by the unpaired d, B moves more than the target...
    assert abs(row["dz_by_axis"]["B"]) < row["dz_target"]  # ...by d_z it does not
    assert row["d_off_target_max_abs"] == pytest.approx(abs(row["d_by_axis"]["B"]))  # unpaired d off target, too
    assert row["p_holm"] < 1e-6 and row["shift_low"] > 0.4 and row["shift"] == row["diff"] and row["n_comparisons"] == 1
    # A label-only design cannot tell control from the label token's push: a shift, never a verdict.
    assert row["controllable"] is None and row["specific"] is None and not row["cancels_label_token"]
    assert "label token" in row["verdict"]


def test_summary_gives_no_control_verdict_from_a_label_only_design():
    from metalens.probes.space import summarize

    ctrl = planted_control().to_dict()
    results = {"axes": {"names": ["A", "B"], "explained_variance": [0.5, 0.1]},
               "reporting": {"tests": [{"axis": a, "accuracy": 0.5, "shuffled_accuracy": 0.5, "p_holm": 1.0}
                                       for a in ("A", "B")]},
               "implicit": ctrl, "explicit": None}
    s = summarize(results)
    row = s["rows"][0]
    assert row["implicit_controllable"] is None and row["implicit_specific"] is None
    assert row["implicit_shifted"] and row["implicit_shift_dz"] > 5
    assert s["n_implicit_controllable"] is None and s["n_implicit_specific"] is None and s["n_implicit_shifted"] == 1
    assert "flip" in s["control_verdict"]
    # An old results.json (a label-only row with specific=True, no design flag) gets no verdict either.
    old = {**results, "implicit": {**ctrl, "effects": [{**e, "specific": True} for e in ctrl["effects"]]}}
    for e in old["implicit"]["effects"]:
        del e["cancels_label_token"]
    assert summarize(old)["rows"][0]["implicit_controllable"] is None


def test_control_rows_carry_the_mde_of_their_paired_test():
    from metalens.power import mde_paired_mean

    row = planted_control().effects()[0]
    mde = row["mde"]
    diff = planted_control().projections[0][:, 1, 0] - planted_control().projections[0][:, 0, 0]
    assert mde["n"] == 12 and mde["alpha"] == 0.05 and mde["power"] == 0.8 and mde["design"].startswith("paired t")
    assert mde["value"] == pytest.approx(mde_paired_mean(diff.std(ddof=1), 12, 0.05, alternative="greater"))
    assert mde["value_dz"] == pytest.approx(mde["value"] / diff.std(ddof=1))
