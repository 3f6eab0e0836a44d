"""The atlas's metrics on planted arrays: AUROC and its interval, withdraw deltas, calibration, the
"knows but does not say" gap, the correctness probe's shuffled-label check and the model x signal family."""
import numpy as np
import pytest

from metalens.analyses import metacog
from metalens.analyses.atlas import probe_signal


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
