"""The sections of the `introspect eval` report: figures and tables built from its results."""
from __future__ import annotations

from metalens.introspect.evaluation.figures import auroc_figure, reliability_figure
from metalens.stats import bounds_text

PREDICTORS = ("head", "probe", "shuffled", "verbal")


def _interval(gap: dict) -> str:
    """A gap's bounds, or 'n/a (5 units)' where the bootstrap was not computed (too few units)."""
    return bounds_text(*gap["ci95"], gap["n_groups"])


def summary_rows(fractions: list[dict]) -> list[dict]:
    """Per prefix fraction: AUROC of each predictor, the head's calibration and length error."""
    return [{"prefix": f["fraction"], **{f"{k} AUROC": f[k]["auroc"] for k in PREDICTORS if k in f},
             "head Brier": f["head"]["brier"], "head ECE": f["head"]["ece"], "head corr": f["head"].get("corr"),
             "head acc@0.5": f["head"].get("acc@0.5"), "length MAE": f["length_mae"],
             "length MAE (constant)": f["length_mae_constant"]} for f in fractions]


def gap_rows(results: dict) -> list[dict]:
    """Per prefix fraction and over all positions: head vs shuffled-label heads, with the interval."""
    rows = [{"prefix": f["fraction"], **f} for f in results["fractions"]]
    rows.append({"prefix": "all", **results["all_positions"]})
    return [{"prefix": r["prefix"], "head AUROC": r["head"]["auroc"], "shuffled AUROC (mean)": r["shuffled"]["auroc"],
             "gap": r["head_vs_shuffled"]["gap"], "95 %": _interval(r["head_vs_shuffled"]),
             "share of resamples <= 0": r["head_vs_shuffled"]["share_not_above"]} for r in rows]


def within_rows(results: dict) -> list[dict]:
    """Per prefix fraction and over all positions: AUROC - 0.5 pooled, and the within-problem AUROC."""
    rows = [{"prefix": f["fraction"], **f} for f in results["fractions"]]
    rows.append({"prefix": "all", **results["all_positions"]})
    out = []
    for r in rows:
        chance, within = r["head_above_chance"], r["within_problem"]
        out.append({"prefix": r["prefix"], "head AUROC - 0.5": chance["estimate"],
                    "95 %": bounds_text(chance["low"], chance["high"], chance["n"]),
                    "within-problem head": within["head"]["estimate"],
                    "within 95 %": bounds_text(within["head"]["low"], within["head"]["high"], within["head"].get("n", 0)),
                    "within-problem probe": within["probe"]["estimate"], "within-problem shuffled": within["shuffled"],
                    "mixed problems": within["head"]["n_mixed"], "problems": within["head"]["n_problems"]})
    return out


def level_rows(by_level: dict) -> list[dict]:
    """All positions within each difficulty level: does the head know more than the level?"""
    return [{"level": lv, "head AUROC": r["head"]["auroc"], "probe AUROC": r["probe"]["auroc"],
             "shuffled AUROC (mean)": r["shuffled"]["auroc"], "gap": r["head_vs_shuffled"]["gap"],
             "95 %": _interval(r["head_vs_shuffled"])}
            for lv, r in by_level.items()]


def eval_sections(results: dict) -> list[tuple]:
    """(title, figure or table) pairs for report.html, cross-validation included when it ran."""
    sections = [
        ("Reward AUROC by prefix fraction", auroc_figure(results["fractions"])),
        ("Summary (held-out problems)", summary_rows(results["fractions"])),
        ("Head vs shuffled-label heads (AUROC gap, 95 % bootstrap interval over held-out problems)",
         gap_rows(results)),
        ("Pooled AUROC - 0.5, and the AUROC within problems with mixed outcomes (difficulty held fixed)",
         within_rows(results)),
        ("Reliability of the head's P(correct)", reliability_figure(results["reliability"])),
    ]
    if results.get("by_level"):
        sections.append(("Head by difficulty level of the scored questions (all positions)",
                         [{"level": lv, **r} for lv, r in results["by_level"].items()]))
    if results.get("transfer"):
        sections.insert(0, ("Transfer", f"Trained on the head's own rollouts, scored on every question of "
                                        f"{results['transfer']}."))
    cv = results.get("cv")
    if cv:
        k = cv["k"]
        sections += [(f"{k}-fold cross-validation by problem: reward AUROC", auroc_figure(cv["fractions"])),
                     (f"{k}-fold cross-validation: head vs shuffled-label heads", gap_rows(cv)),
                     (f"{k}-fold cross-validation: AUROC - 0.5 and within-problem AUROC", within_rows(cv)),
                     (f"{k}-fold cross-validation within each difficulty level (all positions)",
                      level_rows(cv.get("by_level", {})))]
    return sections
