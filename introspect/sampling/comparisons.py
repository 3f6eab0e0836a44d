"""Sampler against baseline, question by question: wins, ties and losses with an exact sign test.

Per question both methods are right or wrong (0/1), so most questions tie (both wrong on a hard
question, both right on an easy one) and only the others can tell the methods apart. The exact
two-sided sign test on those (`metalens.power.sign_test`, the same as an exact McNemar test) stays
valid at any count, where a bootstrap of the accuracy difference over a few discordant questions
does not; its sensitivity (`mde`) is stated beside it at the run's own n and Holm-adjusted alpha.
"""
from __future__ import annotations

import numpy as np

from metalens import power, stats

HEADLINE_BASELINES = ("majority", "best_of_n")  # the comparisons a utility run is judged by


def wins_ties_losses(a, b) -> dict:
    """Per unit 0/1 outcomes of a against b: {wins, ties, losses, p_sign} (a right where b is wrong wins)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"Paired outcomes need equal lengths, got {len(a)} and {len(b)}: pair each question.")
    wins, losses = int((a > b).sum()), int((a < b).sum())
    return {"wins": wins, "ties": int(len(a) - wins - losses), "losses": losses,
            "p_sign": power.sign_test(wins, losses)}


def sign_mde(wins: int, ties: int, losses: int, alpha: float, target: float = 0.8) -> dict:
    """What the sign test could detect here: the smallest win share among the non-tied questions
    (`metalens.power.mde_sign_test`) and, as an accuracy difference over all questions at this share
    of discordant questions, `metalens.power.mde_mcnemar`; NaN (JSON null) when there are too few."""
    untied, n = wins + losses, wins + ties + losses
    share = power.mde_sign_test(untied, alpha, target) if untied else float("nan")
    accuracy = power.mde_mcnemar(n, untied / n, alpha, target) if untied and n >= 2 else float("nan")
    return {"value": share, "design": "exact two-sided sign test on the non-tied questions (win share)",
            "n": untied, "alpha": alpha, "power": target, "accuracy_difference": accuracy,
            "accuracy_design": f"McNemar over {n} questions, {untied} discordant"}


def comparison_rows(utility: list[dict], baselines=HEADLINE_BASELINES, alpha: float = 0.05) -> list[dict]:
    """One row per (utility setting, baseline) from `branching.utility_runs` rows: the baseline's budget,
    wins / ties / losses, the sign test's p and its Holm adjustment over the rows, and the `mde` at the
    Holm family's strictest level (`metalens.power.family_alpha`)."""
    rows = [{"alpha": r["alpha"], "beta": r["beta"], "baseline": name, "budget": r["vs"][name]["setting"],
             "tokens": r["tokens"], "baseline_tokens": r["vs"][name]["tokens"],
             **{k: r["vs"][name][k] for k in ("wins", "ties", "losses", "p_sign")}}
            for r in utility for name in baselines if name in r["vs"] and "p_sign" in r["vs"][name]]
    if not rows:
        return rows
    stats.add_holm(rows, "p_sign")
    strictest = power.family_alpha(alpha, len(rows))
    for row in rows:
        row["mde"] = sign_mde(row["wins"], row["ties"], row["losses"], strictest)
    return rows


def comparison_text(row: dict) -> str:
    """One line for a report: 'vs majority@3: 2 wins / 19 ties / 2 losses, sign p 1.00 (mde: win share 0.95)'."""
    mde = row["mde"]["value"]
    sensitivity = f"win share {mde:.2f}" if mde is not None and np.isfinite(mde) else (
        f"none: {row['mde']['n']} non-tied questions")
    return (f"vs {row['baseline']}@{row['budget']}: {row['wins']} wins / {row['ties']} ties / {row['losses']} losses, "
            f"sign p {row['p_sign']:.2f} (Holm {row['p_holm']:.2f}; smallest detectable {sensitivity})")
