"""Reporting task: prompts put labels where the scorer looks, the scorer reads the model's own
logits, shuffled labels give chance, and the statistics behave on known inputs."""
import numpy as np
import pytest
import torch

from metalens.probes.prompts import label_token_ids, render
from metalens.probes.reporting import ReportingResult, label_logprobs, prompt_label_sets, measure_reporting
from metalens.stats import cohens_d, holm, mean_ci

SENTS = ["I ran.", "I hid a cat.", "I ate.", "I sang a song."]


@pytest.mark.parametrize("fixture", ["tiny_gemma", "tiny_llama"])
@pytest.mark.parametrize("task", ["report", "control"])
def test_render_locates_every_label_and_sentence(fixture, task, request):
    model = request.getfixturevalue(fixture)
    r = render(model, SENTS, [0, 1, 1, 0], task, label_words=("0", "1"))
    tok = model.tokenizer
    assert [tok.decode(r.input_ids[p]).strip() for p in r.label_pos] == ["0", "1", "1", "0"]
    assert [tok.decode(r.input_ids[a:b]).strip() for a, b in r.sentence_spans] == SENTS
    assert r.input_ids == tok(r.text, add_special_tokens=not model.is_chat)["input_ids"]


def test_open_control_prompt_ends_where_the_sentence_goes(tiny_llama, tiny_gemma):
    r = render(tiny_gemma, SENTS[:2] + [""], [0, 1, 1], "control", open_last=True)
    assert r.text.endswith("Label: 1\nSentence:")
    r = render(tiny_llama, SENTS[:2] + [""], [0, 1, 1], "control", open_last=True)
    assert r.text.endswith("<|assistant|>")


def test_label_logprobs_match_the_full_forward(tiny_gemma):
    r = render(tiny_gemma, SENTS, [0, 1, 1, 0], "report")
    cand = label_token_ids(tiny_gemma)
    (logp, mass), = label_logprobs(tiny_gemma, [r], cand)
    with torch.no_grad():
        logits = tiny_gemma.hf(input_ids=torch.tensor([r.input_ids])).logits[0]
    full = torch.log_softmax(logits[torch.tensor(r.label_pos) - 1].float(), -1)[:, cand]
    assert torch.allclose(logp, torch.log_softmax(full, -1), atol=1e-4)
    assert torch.allclose(mass, full.exp().sum(-1), atol=1e-4)


def test_padding_in_a_batch_does_not_change_scores(tiny_llama):
    cand = label_token_ids(tiny_llama)
    short = render(tiny_llama, SENTS[:2], [0, 1], "report")
    long = render(tiny_llama, SENTS, [0, 1, 1, 0], "report")
    alone = label_logprobs(tiny_llama, [short], cand)[0][0]
    batched = label_logprobs(tiny_llama, [short, long], cand, batch_size=2)[0][0]
    assert torch.allclose(alone, batched, atol=1e-4)


def test_reporting_gives_chance_on_shuffled_labels(tiny_gemma):
    rng = np.random.default_rng(0)
    texts = [f"I {w}." for w in ["ran", "sat", "ate", "hid", "sang", "slept", "swam", "read", "cooked", "wrote",
                                 "drove", "knit", "dug", "hummed", "biked", "fished"]]
    labels = rng.permutation([0, 1] * 8)[:, None]  # balanced, as the median split makes them
    res = measure_reporting(tiny_gemma, texts, labels, ["A"], n_values=(0, 2, 4, 8), draws=10, n_test_min=0, progress=False)
    assert res.shuffled_p_correct.shape == (1, 10, 9)
    acc = (res.shuffled_p_correct[0] > 0.5).mean(1)
    ci = mean_ci(acc)
    assert ci.low <= 0.5 <= ci.high
    ce = -np.log(res.shuffled_p_correct).mean()
    assert ce >= np.log(2) - 0.05  # no predictor beats ln 2 on labels that carry no information
    assert res.p_correct.shape == (1, 10, 9) and res.n_values == [0, 2, 4, 8]


def fake_result(p_true, p_shuffled, n_items=9, draws=20, seed=0):
    rng = np.random.default_rng(seed)
    p = (rng.random((1, draws, n_items)) < p_true) * 0.5 + 0.25  # p(correct) 0.75 when right, 0.25 when wrong
    s = (rng.random((draws, n_items)) < p_shuffled) * 0.5 + 0.25
    return ReportingResult(["A"], [0, 2, 4, 8], p, s, np.ones_like(p), "", {})


def test_tests_flag_above_chance_reporting_and_not_chance():
    assert fake_result(0.9, 0.5).tests(n_min=1)[0]["p_holm"] < 0.01
    assert fake_result(0.5, 0.5, seed=1).tests(n_min=1)[0]["p_holm"] > 0.05


def test_curve_bins_cover_each_position_once():
    res = fake_result(0.9, 0.5)
    rows = res.curve(res.p_correct[0])
    assert [(r["N_from"], r["N"]) for r in rows] == [(0, 0), (1, 2), (3, 4), (5, 8)]


def test_holm_and_cohens_d_on_known_values():
    assert np.allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert cohens_d([1, 2, 3], [0, 1, 2]) == pytest.approx(1.0)
    assert mean_ci([1, 1, 1]).estimate == 1


def test_label_logprobs_apply_the_final_logit_softcap():
    from metalens.testing import tiny_model

    model = tiny_model("gemma3", seed=7)
    model.hf.config.final_logit_softcapping = 0.5  # tight: capped and uncapped scores differ a lot
    r = render(model, SENTS, [0, 1, 1, 0], "report")
    cand = label_token_ids(model)
    (logp, _), = label_logprobs(model, [r], cand)
    with torch.no_grad():
        logits = model.hf(input_ids=torch.tensor([r.input_ids])).logits[0]  # HF applies the cap itself
    full = torch.log_softmax(logits[torch.tensor(r.label_pos) - 1].float(), -1)[:, cand]
    assert torch.allclose(logp, torch.log_softmax(full, -1), atol=1e-4)
    model.hf.config.final_logit_softcapping = None
    (uncapped, _), = label_logprobs(model, [r], cand)
    assert not torch.allclose(uncapped, logp, atol=1e-3)


def test_reporting_test_pairs_each_draw_with_its_shuffled_baseline():
    # Draws differ a lot in how easy their sentences are (shared by the axis and the shuffled
    # labels on them); the axis beats its own draw's baseline by 2 to 4 of 50 items every time. A
    # paired test sees that; an unpaired (Welch) test drowns it in the between-draw spread.
    from scipy import stats

    rng = np.random.default_rng(0)
    draws, n_items = 10, 50
    base_correct = rng.integers(5, 40, draws)
    p = np.full((1, draws, n_items), 0.25)
    s = np.full((draws, n_items), 0.25)
    for d, c in enumerate(base_correct):
        s[d, :c] = 0.75
        p[0, d, :c + 2 + d % 3] = 0.75
    row = ReportingResult(["A"], [0, 49], p, s, np.ones_like(p), "", {}).tests(n_min=0)[0]
    welch = stats.ttest_ind((p[0] > 0.5).mean(1), (s > 0.5).mean(1), equal_var=False, alternative="greater").pvalue
    assert welch > 0.2
    assert row["p_holm"] < 1e-4 and "paired" in row["test"]
    gains = (p[0] > 0.5).mean(1) - (s > 0.5).mean(1)
    assert row["diff"] == pytest.approx(gains.mean()) and row["d_z"] == pytest.approx(gains.mean() / gains.std(ddof=1))
    assert row["diff_low"] > 0.03
    assert row["n_comparisons"] == 1 and row["n_draws"] == draws


def test_holm_family_is_every_axis_tested():
    res = fake_result(0.9, 0.5)
    res = ReportingResult(["A", "B", "C"], res.n_values, np.repeat(res.p_correct, 3, axis=0), res.shuffled_p_correct,
                          np.ones((3, *res.p_correct.shape[1:])), "", {})
    rows = res.tests(n_min=1)
    assert all(r["n_comparisons"] == 3 for r in rows)
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 3 * rows[0]["p"]))


def test_each_axis_shuffle_keeps_that_axis_label_counts():
    rng = np.random.default_rng(0)
    labels = np.stack([np.r_[np.ones(9), 0], np.r_[np.ones(5), np.zeros(5)]], 1).astype(int)  # 90 % vs 50 % ones
    sets = prompt_label_sets(labels, rng)
    assert len(sets) == 4 and all((sets[a] == labels[:, a]).all() for a in range(2))
    for a in range(2):
        assert sorted(sets[2 + a]) == sorted(labels[:, a])


def test_an_axis_is_tested_against_its_own_shuffle():
    # axis A: 90 % of labels alike; a model answering the majority label scores 0.9 on it and on its
    # own shuffle (no gain); axis B is balanced, its shuffle scores 0.5
    draws, items = 6, 10
    p = np.full((2, draws, items), 0.9)
    p[0, :, -1] = 0.1  # the one minority item
    shuffled = np.stack([p[0], np.tile([0.9, 0.1], (draws, items // 2))])
    res = ReportingResult(["A", "B"], [0, 4, 8], p, shuffled, np.ones_like(p), "", {})
    rows = {r["axis"]: r for r in res.tests(n_min=1)}
    assert rows["A"]["shuffled_accuracy"] == pytest.approx(8 / 9) and rows["A"]["diff"] == pytest.approx(0)
    assert rows["B"]["shuffled_accuracy"] == pytest.approx(4 / 9)


def test_a_result_saved_with_one_shared_shuffle_still_loads_for_every_axis():
    res = ReportingResult(["A", "B"], [0], np.full((2, 3, 4), 0.9), np.full((3, 4), 0.4), np.ones((2, 3, 4)), "", {})
    assert res.shuffled_p_correct.shape == (2, 3, 4)


def test_reporting_rows_carry_the_mde_at_the_holm_alpha_applied():
    from metalens.power import mde_paired_mean
    from metalens.probes.reporting import ReportingResult

    rng = np.random.default_rng(0)
    p = rng.random((3, 6, 12))  # 3 axes, 6 draws, 12 items
    shuffled = rng.random((3, 6, 12))
    res = ReportingResult(["PC1", "PC2", "LR"], [0, 4, 11], p, shuffled, np.ones_like(p), "", {"n_test_min": 4})
    rows = res.tests(4)
    for a, row in enumerate(rows):
        diff = (p[a][:, 4:] > 0.5).mean(1) - (shuffled[a][:, 4:] > 0.5).mean(1)
        mde = row["mde"]
        assert row["n_comparisons"] == 3 and mde["alpha"] == pytest.approx(0.05 / 3) and mde["n"] == 6
        assert mde["value"] == pytest.approx(mde_paired_mean(diff.std(ddof=1), 6, 0.05 / 3, alternative="greater"))
        assert row["mde_items"]["n"] == 6 * 8 and row["mde_items"]["value"] > 0
