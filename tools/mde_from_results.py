"""Minimum detectable effects for a committed experiment's intervals, from the numbers its jsons hold.

    python tools/mde_from_results.py results/<experiment> [--files a.json b.json]

Reads every json of the folder (or `--files`), finds each interval it can give a design to, and writes
`results/<experiment>/mde.json`: per interval its file, its dotted path, the estimate and interval, and
an `mde` record (`metalens.power.mde_record`) at the run's own n and spread, 80 % power, alpha 0.05
two-sided or Holm's alpha / m where the row carries `n_comparisons`. The value is in the estimate's
units, as a distance from the null (0.5 for an AUROC, 0 for a difference). Designs, by what a json holds:

- a paired t-test (`mean_diff`, `low`, `high`, `n`): the sd of the differences from the 95 % t-interval;
- a paired ASR difference with McNemar's p (`asr_difference`, MENTOR): the discordant share from the
  per-query `samples[*].violated`;
- a bootstrap interval (`estimate`/`gap`, `low`/`high` or `ci95`, method "bootstrap ..."): a normal
  test with the standard error the 95 % interval implies;
- emergent-heads runs (`ablation`/`base_ablation` with `per_pair`): the emergent set's damage minus
  the layer-matched random groups' mean damage, a paired t-test computed here (the README's comparison);
- a steering run saved without a paired test (`rule`, `samples` with both texts): the texts scored
  again with the rule's keyword checker and, if that reproduces the saved rates, a paired t-test;
- two arms with rates (`unsteered`, `steered`, each `rate`/`adherence` and `n`): two independent
  proportions from the unsteered rate.

An interval none of these fits is listed under `skipped` with the reason, never guessed.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from metalens import power
from metalens.circuits.compare import damage
from metalens.stats import paired_test

ALPHA, POWER = 0.05, 0.8


def _paired_t(row: dict) -> dict:
    """The sd of the differences from the json's 95 % t-interval (half-width = t * sd / sqrt(n)), which
    also holds when the mean difference, and so d_z, is 0."""
    n_comparisons = int(row.get("n_comparisons") or 1)
    alpha, n = power.family_alpha(ALPHA, n_comparisons), int(row["n"])
    if n < 2 or not row["high"] > row["low"]:
        return {"value": None, "design": "paired mean (t-test)", "n": n, "alpha": alpha, "power": POWER,
                "why_none": "a zero-width interval (no spread) or n < 2: the t-test's power is not defined"}
    sd = (row["high"] - row["low"]) / 2 / float(stats.t.ppf(0.975, n - 1)) * math.sqrt(n)
    return power.mde_record(power.mde_paired_mean(sd, n, alpha, POWER), "paired mean (t-test)", n, alpha, POWER,
                            n_comparisons, sd_diff=sd)


def _mentor(row: dict, samples: list) -> dict:
    violated = [[row["condition"] in s["violated"], row["vs"] in s["violated"]] for s in samples]
    a, b = np.array(violated, dtype=bool).T
    return power.mcnemar_mde(a, b, ALPHA, POWER, int(row.get("n_comparisons") or 1))


def _interval(estimate: float, low: float, high: float, n: int) -> dict:
    return power.mde_record(power.mde_from_interval(low, high, 0.95, ALPHA, POWER),
                            "normal test, SE from the 95 % bootstrap interval", n, ALPHA, POWER)


def _arms(node: dict) -> dict:
    rate = lambda arm: arm.get("rate", arm.get("adherence"))  # noqa: E731 - the two spellings of one rate
    p0, n0, n1 = rate(node["unsteered"]), int(node["unsteered"]["n"]), int(node["steered"]["n"])
    return power.mde_record(power.mde_two_proportions(p0, n0, n1, ALPHA, POWER), "two independent proportions",
                            n0 + n1, ALPHA, POWER, p0=p0, n_per_arm=[n0, n1])


def entries(data, file: str) -> tuple[list[dict], list[dict]]:
    """(one entry per interval with its `mde`, the intervals skipped with why) in one json's data."""
    found, skipped = [], []
    samples = data.get("samples") if isinstance(data, dict) else None

    def walk(node, path: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        here = {"file": file, "path": path.lstrip(".")}
        if {"mean_diff", "low", "high", "n"} <= node.keys() and "d_z" in node:
            found.append({**here, "estimate": node["mean_diff"], "low": node["low"], "high": node["high"],
                          "mde": _paired_t(node)})
        elif "asr_difference" in node:
            if samples and all("violated" in s for s in samples):
                found.append({**here, "estimate": node["asr_difference"], "low": node["low"], "high": node["high"],
                              "mde": _mentor(node, samples)})
            else:
                skipped.append({**here, "why": "no per-query `samples[*].violated` to count discordant pairs"})
        elif str(node.get("method", "")).startswith("bootstrap") and {"estimate", "low", "high", "n"} <= node.keys():
            if node["high"] > node["low"]:
                found.append({**here, "estimate": node["estimate"], "low": node["low"], "high": node["high"],
                              "mde": _interval(node["estimate"], node["low"], node["high"], node["n"])})
            else:
                skipped.append({**here, "why": "a zero-width interval (equal by construction): nothing to test"})
        elif {"gap", "ci95", "n_groups"} <= node.keys():
            low, high = node["ci95"]
            found.append({**here, "estimate": node["gap"], "low": low, "high": high,
                          "mde": _interval(node["gap"], low, high, node["n_groups"])})
        elif {"unsteered", "steered"} <= node.keys() and all(isinstance(node[k], dict) and "n" in node[k]
                                                            for k in ("unsteered", "steered")):
            found.append({**here, "path": f"{here['path']}.steered_vs_unsteered_arms".lstrip("."), "estimate": None,
                          "low": None, "high": None, "mde": _arms(node),
                          "note": "steered vs unsteered rate; the json has per-arm intervals, no paired test"})
        for key, value in node.items():
            walk(value, f"{path}.{key}")

    walk(data, "")
    if isinstance(data, dict):
        metric = (data.get("metadata") or {}).get("metric") or (data.get("config") or {}).get("metric")
        for key in ("ablation", "base_ablation"):
            found += _emergent_vs_random(data.get(key), key, file, metric)
        if isinstance(data.get("rule"), str) and "paired" not in data and data.get("samples"):
            entry, why = _rescored_pairs(data, file)
            (found if entry else skipped).append(entry or {"file": file, "path": "samples", "why": why})
    return found, skipped


def _emergent_vs_random(groups, key: str, file: str, metric: str | None) -> list[dict]:
    """Emergent-heads runs compare the emergent set's damage with the random groups' by eye; this is the
    paired test that comparison stands for, over the same pairs (`per_pair` of each group)."""
    if not isinstance(groups, dict) or not all("per_pair" in groups.get(g, {}) for g in ("none", "emergent",
                                                                                          "random_mean")):
        return []
    if metric is None:
        return []
    harm = {g: damage(metric, groups["none"]["per_pair"], groups[g]["per_pair"]) for g in ("emergent", "random_mean")}
    t = paired_test(harm["emergent"], harm["random_mean"])
    return [{"file": file, "path": f"{key}.emergent_minus_random_mean_damage", "estimate": t.mean_diff,
             "low": t.low, "high": t.high, "p": t.p,
             "mde": power.paired_mde(harm["emergent"] - harm["random_mean"], ALPHA, POWER),
             "note": "computed here from per_pair: the emergent set's damage minus the random groups' mean damage"}]


def _rescored_pairs(data: dict, file: str) -> tuple[dict | None, str]:
    """A steering run saved without a paired test: score its saved texts again with the rule's keyword
    checker and, when that reproduces both saved rates, test steered against unsteered per prompt."""
    from metalens.steering import checker_for, library

    rule = library().get(data["rule"])
    if rule is None or not (rule.keywords or rule.regex or rule.forbid):
        return None, f"rule {data['rule']!r} has no keyword checker to score the saved texts again"
    check = checker_for(rule)
    passed = {arm: [float(x) for x in check([s[arm] for s in data["samples"]])] for arm in ("steered", "unsteered")}
    if any(abs(np.mean(passed[arm]) - data[arm]["rate"]) > 1e-9 for arm in passed):
        return None, "the checker no longer reproduces the saved rates: no paired test is made up"
    t = power.paired_summary(passed["steered"], passed["unsteered"])
    return {"file": file, "path": "paired.steered_minus_unsteered", "estimate": t["mean_diff"], "low": t["low"],
            "high": t["high"], "p": t["p"], "mde": t["mde"],
            "note": "computed here: the saved texts scored again with the rule's keyword checker, paired by prompt"}, ""


def mde_for_folder(folder: str | Path, files: list[str] | None = None) -> dict:
    """What `mde.json` holds for one results folder (every json of it, or `files`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a results folder: pass results/<experiment>.")
    names = files or sorted(p.name for p in folder.glob("*.json") if p.name != "mde.json")
    found, skipped = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: --files names jsons inside {folder}.")
        f, s = entries(json.loads(path.read_text()), name)
        found += f
        skipped += s
    command = f"python tools/mde_from_results.py {folder.as_posix()}" + (f" --files {' '.join(files)}" if files else "")
    return {"command": command, "power": POWER, "alpha": ALPHA, "entries": found, "skipped": skipped}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="results/<experiment>")
    parser.add_argument("--files", nargs="+", help="only these jsons of the folder (default: all but mde.json)")
    args = parser.parse_args(argv)
    out = mde_for_folder(args.folder, args.files)
    (Path(args.folder) / "mde.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.folder}/mde.json: {len(out['entries'])} intervals, {len(out['skipped'])} skipped")


if __name__ == "__main__":
    main()
