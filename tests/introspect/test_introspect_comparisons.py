"""Sampler against baseline per question: wins / ties / losses, the exact sign test and its mde."""
import numpy as np
import pytest

from metalens.introspect.sampling.comparisons import comparison_rows, comparison_text, sign_mde, wins_ties_losses
from metalens.power import family_alpha, sign_test


def test_wins_ties_losses_count_questions_and_test_only_the_untied():
    a, b = np.array([1, 1, 0, 0, 1, 0]), np.array([0, 1, 0, 1, 0, 0])
    assert wins_ties_losses(a, b) == {"wins": 2, "ties": 3, "losses": 1, "p_sign": sign_test(2, 1)}
    assert wins_ties_losses(np.ones(12), np.zeros(12))["p_sign"] == pytest.approx(2 * 0.5 ** 12)
    with pytest.raises(ValueError, match="equal lengths"):
        wins_ties_losses(a, b[:3])


def test_the_mde_is_null_on_a_handful_of_untied_questions_and_shrinks_with_more():
    few = sign_mde(0, 18, 3, alpha=0.05)  # the old held-out run: 0 wins, 3 losses
    assert np.isnan(few["value"]) and few["n"] == 3
    many = sign_mde(20, 20, 20, alpha=0.05)
    assert 0.5 < many["value"] < 1 and 0 < many["accuracy_difference"] < 1 and many["n"] == 40


def test_comparison_rows_share_one_holm_family_and_its_strictest_alpha():
    def vs(wins, ties, losses):
        return {"setting": 3, "tokens": 30.0, "wins": wins, "ties": ties, "losses": losses,
                "p_sign": sign_test(wins, losses)}

    utility = [{"alpha": 0.001, "beta": 0.0, "tokens": 25.0,
                "vs": {"majority": vs(12, 8, 1), "best_of_n": vs(5, 12, 4), "prune_only": vs(1, 20, 0)}},
               {"alpha": 0.01, "beta": 0.0, "tokens": 9.0, "vs": {"majority": {"setting": None, "note": "none"},
                                                                  "best_of_n": vs(0, 18, 3)}}]
    rows = comparison_rows(utility)
    assert [(r["alpha"], r["baseline"]) for r in rows] == [(0.001, "majority"), (0.001, "best_of_n"), (0.01, "best_of_n")]
    assert all(r["n_comparisons"] == 3 and r["mde"]["alpha"] == family_alpha(0.05, 3) for r in rows)
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 3 * rows[0]["p_sign"]))
    assert comparison_text(rows[0]).startswith("vs majority@3: 12 wins / 8 ties / 1 losses, sign p 0.00")
    assert "none: 3 non-tied questions" in comparison_text(rows[2])
