"""The sections of a MENTOR run's report.html."""
from __future__ import annotations

import html

from metalens.report import Html


def _agreement(a: dict | None) -> str:
    if not a:
        return "-"
    return f"{a['agreement']:.2f} [{a['low']:.2f}, {a['high']:.2f}]" if "low" in a else f"{a['agreement']:.2f}"


def sections(result) -> list:
    """Figures, tables and prose for `MentorResult.save`'s report.html."""
    import plotly.graph_objects as go  # only when a report is written: importing steering stays light

    conds = list(result.attack_success)
    asr = [result.attack_success[c] for c in conds]
    fig = go.Figure(go.Bar(x=conds, y=[a["rate"] for a in asr], error_y=dict(
        type="data", array=[a["high"] - a["rate"] for a in asr], arrayminus=[a["rate"] - a["low"] for a in asr])))
    fig.update_layout(title="Attack success on the test queries (keyword checker, Wilson 95% CI)", height=380,
                      yaxis=dict(range=[0, 1], title="attack success rate"))
    table = [{"condition": c, "ASR": a["rate"], "95% CI": f"[{a['low']:.2f}, {a['high']:.2f}]", "n": a["n"],
              "strength": result.strengths.get(c, "-"),
              "assessor ASR": result.assessor_attack_success.get(c, {}).get("rate", "-"),
              "agreement (95% CI)": _agreement(result.agreement.get(c))} for c, a in zip(conds, asr)]
    rounds = [{k: v for k, v in r.items() if k != "selection"} | {"test ASR": r["test_asr"]["rate"]}
              for r in result.rounds]
    for r in rounds:
        r.pop("test_asr", None)
        r["new_rules"] = ", ".join(r["new_rules"]) or "-"
    selection = [{"round": r["round"], **s} for r in result.rounds for s in r["selection"]]
    side = ["query", "no_rules", "rules_in_prompt", "all_vectors", f"retrieved_round{result.config.rounds}"]
    samples = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;vertical-align:top'>{_esc(s.get(k, ''))}"
                         + (" <b>(violates)</b>" if k in s["violated"] else "") + "</td>" for k in side) + "</tr>"
        for s in result.samples[:15])
    head = "".join(f"<th>{k}</th>" for k in side)
    learned = [{"id": n.id, "rule": n.text, "round": n.round, "queries": len(n.queries)}
               for n in result.graph.rules() if n.provenance == "learned"]
    return [
        ("Attack success per condition (test queries)", fig),
        ("Table", table),
        ("Each condition against no_rules (same test queries; exact McNemar, Holm over the conditions)",
         [{"condition": r["condition"], "ASR difference": r["asr_difference"],
           "95% CI": f"[{r['low']:+.2f}, {r['high']:+.2f}]", "p": r["p"], "p (Holm)": r["p_holm"],
           "comparisons": r["n_comparisons"],
           "detectable at 80 % power": "-" if r["mde"]["value"] is None else f"{r['mde']['value']:.2f}"}
          for r in result.paired()]),
        ("How to read this", f"Queries are split build ({result.splits.get('build')}) / validation "
         f"({result.splits.get('validation')}) / test ({result.splits.get('test')}) by a seeded shuffle within each "
         "domain. Rule vectors are trained on build queries, self-assessment rounds assess build-query responses, "
         "each condition's strength is chosen on validation queries (lowest ASR with fluency cost within budget), "
         "and every rate here is on test queries. The keyword checker counts a response as a violation when it "
         "contains one of its query's violation markers; the assessor's rate is its share of 'misaligned' "
         "verdicts, and agreement is the share of test responses on which both say the same."),
        ("Rule knowledge graph (hover for rules and their queries)", result.graph.figure()),
        ("Self-evolution rounds", rounds),
        ("Strength selection (validation queries)", selection),
        ("Learned rules", learned),
        ("Responses side by side (first 15 test queries)",
         Html(f"<table><thead><tr>{head}</tr></thead><tbody>{samples}</tbody></table>")),
    ]


def _esc(text) -> str:
    return html.escape(str(text))
