"""`steer_rule`: rule -> vector -> sweep -> steered generation (+ MENTOR rounds) -> results + report."""
from __future__ import annotations

import time
from pathlib import Path

from metalens.report import save_json, write_report
from metalens.steering.checkers import checker_for
from metalens.steering.evaluate import evaluate, sweep
from metalens.steering.mentor import checker_judge, mentor, model_judge
from metalens.steering.rulebook import RuleBook
from metalens.steering.rules import find_rule, heldout_prompts, pairs_for_rule
from metalens.steering.vector import SteeringVector


def _default_layers(model) -> list[int]:
    n = model.n_layers
    return sorted({max(0, n // 4), n // 3, n // 2, (2 * n) // 3} - {n})


def steer_rule(model, rule: str, prompts: list[str] | None = None, out: str | Path | None = None,
               pairs: str | Path | None = None, vector: str | Path | None = None, layers=None,
               strengths=(0.5, 1.0, 2.0), method: str = "mean_diff", rounds: int = 0, judge: str = "checker",
               max_new_tokens: int = 24, max_fluency_cost: float = 1.0, n_select: int | None = None) -> dict:
    """Train (or load) a vector for `rule`, sweep layer x strength, and compare steered vs unsteered.

    Prompts are split: the first `n_select` (default a third) choose the layer and strength and
    feed the MENTOR rounds; the rest are held out for the reported adherence. Writes
    results.json, report.html and the rule book under `out` when given.
    """
    started = time.time()
    spec = find_rule(rule)
    positive, negative, positions = pairs_for_rule(spec, pairs)
    checker = checker_for(spec, model, positive, negative)
    prompts = list(prompts) if prompts else heldout_prompts(spec)
    n_select = n_select if n_select is not None else max(2, len(prompts) // 3)
    if len(prompts) <= n_select:
        raise ValueError(f"Need more than {n_select} prompts (some to select the setting, the rest held out); got {len(prompts)}.")
    select, test = prompts[:n_select], prompts[n_select:]
    loaded = SteeringVector.load(vector) if vector else None
    layers = loaded.layers if loaded else [model.check_layer(x) for x in (layers or _default_layers(model))]
    result = sweep(model, positive, negative, checker, select, layers, strengths, method, positions,
                   max_new_tokens, rule=spec.text, vector=loaded)
    best = result.best(max_fluency_cost)
    chosen = SteeringVector(**{**result.vector.__dict__, "directions": {best["layer"]: result.vector.directions[best["layer"]]}})
    book = RuleBook(model.name)
    book.add(spec, chosen, strength=best["strength"])
    base = evaluate(model, test, checker, None, max_new_tokens=max_new_tokens)
    steered = evaluate(model, test, checker, book, max_new_tokens=max_new_tokens, base_nll=base["nll"])
    log = None
    if rounds > 0:
        judge_fn = model_judge(model) if judge == "model" else checker_judge(checker)
        log = mentor(model, book, spec.name, positive, negative, select, test, checker, judge_fn,
                     rounds=rounds, max_new_tokens=max_new_tokens)
    summary = {
        "rule": spec.to_dict(), "model": model.metadata(), "method": method, "positions": positions,
        "layer": best["layer"], "strength": best["strength"], "n_pairs": len(positive),
        "n_select": len(select), "n_test": len(test), "max_new_tokens": max_new_tokens,
        "unsteered": {k: v for k, v in base.items() if k != "outputs"},
        "steered": {k: v for k, v in steered.items() if k != "outputs"},
        "fluency_cost": steered["fluency_cost"],
        "sweep": result.rows, "mentor": log.rows if log else [],
        "samples": [{"prompt": p, "unsteered": u, "steered": s} for p, u, s in zip(test, base["outputs"], steered["outputs"])],
        "seconds": time.time() - started,
    }
    if out is not None:
        out = Path(out)
        book.save(out / "rulebook")
        save_json(out / "results.json", summary)
        write_report(out / "report.html", f"Steering: {spec.text}", _sections(summary, result), model.metadata())
    return summary


def _sections(summary: dict, result) -> list:
    u, s = summary["unsteered"], summary["steered"]
    headline = [{"setting": name, "adherence": d["adherence"], "95% CI": f"[{d['low']:.2f}, {d['high']:.2f}]",
                 "n": d["n"], "loss (nats/token)": d["nll"], "fluency cost": d["fluency_cost"]}
                for name, d in (("unsteered", u), (f"steered (layer {summary['layer']}, strength {summary['strength']:g})", s))]
    sections = [
        ("Held-out adherence", headline),
        ("How to read this", "Adherence is the fraction of held-out responses the rule checker accepts, with a "
         "Wilson 95% interval. Fluency cost is the mean per-token loss of the steered text under the unsteered "
         "model minus that of the unsteered text: how much more surprising steering makes the output. The "
         "layer and strength were chosen on separate prompts from the ones reported here."),
        ("Layer x strength sweep (selection prompts)", result.figure()),
        ("Sweep table", [{k: r[k] for k in ("layer", "strength", "adherence", "low", "high", "fluency_cost")} for r in result.rows]),
        ("Samples", summary["samples"][:12]),
    ]
    if summary["mentor"]:
        sections.insert(2, ("MENTOR rounds (held-out adherence per round)", summary["mentor"]))
    return sections


def demo(model, out_dir: str | Path, rule: str = "ocean") -> dict:
    """A quick steering run for `make demo` (< 2 min on CPU for gemma-3-270m): writes results.json + report.html."""
    return steer_rule(model, rule, prompts=heldout_prompts()[:8], out=out_dir, layers=[model.n_layers // 3],
                      strengths=(2.0,), rounds=1, max_new_tokens=12, n_select=3)
