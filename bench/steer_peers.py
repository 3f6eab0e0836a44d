"""metalens, steering-vectors and repeng side by side: same model, layer, pairs, prompts and checker.

    python bench/steer_peers.py --setup                      # once: .venv-peers with the two peers (see below)
    .venv-peers/bin/python bench/steer_peers.py [--model gemma-3-270m] [--layer 6] [--rule ocean] \\
        [--n-val 16] [--n-test 16] [--seed 0] [--new 24] [--metalens 0.5 1 2 4] [--steering-vectors 0.5 1 2 4] \\
        [--repeng 64 256 1024] [--max-degenerate 0.2] [--max-extensions 3] [--repeats 6] [--json FILE]
    python bench/steer_peers.py --smoke                      # tiny random model, a few tokens, whatever is importable

Each library trains its own vector at `--layer` on the rule's contrastive pairs, with its own
method (metalens: mean difference, averaged over tokens for shipped pairs; steering-vectors: mean
difference at the last token; repeng: first principal component of pair differences at the last
token, unit norm), and has its own strength scale (repeng's unit vectors need larger coefficients).
All three add to the same site, the output of block `--layer`, at every position, and all generate
through the same `metalens.generate` call (greedy, chat template when the model has one).

The rule's held-out prompts are split by a seeded shuffle into `--n-val` validation and `--n-test`
test prompts (disjoint). **Choosing a strength sees validation prompts only**: each library's grid is
scored there in ascending order, then extended by doubling its last strength while that strength is
still the best so far (adherence not below the best) and its degenerate share is at most
`--max-degenerate`, at most `--max-extensions` times; the stop reason is recorded ("fell",
"degenerate", "cap"). The chosen strength is the highest validation adherence among strengths within
the degenerate limit (ties: the smaller strength; none within: the least degenerate). **Test prompts
are scored once**: unsteered, and each library at its chosen strength. Reported per test prompt:
adherent (rule checker), degenerate (empty output, or 6+ words with under 40 % distinct), distinct-word
share (fluency), changed from unsteered; then paired differences metalens minus each peer over test
prompts (mean, t 95 % interval, Holm over all comparisons, `mde` at the observed sd, n and Holm's
strictest level). **Speed**: each library at its chosen strength and unsteered generation, `--new`
tokens forced (EOS masked) on the first `--speed-prompts` test prompts, timed in ABBA order over
`--repeats` rounds (bench/common.py); paired ratios peer seconds / metalens seconds and library /
unsteered (median of per-round ratios, bootstrap 95 % interval), with wall, CPU time and load average.

Peers are imported when present and skipped with a message otherwise. `--setup` makes
`.venv-peers` (git-ignore it), a venv that sees this project's `.venv` packages through a `.pth`
line and adds `pip install --no-deps steering-vectors repeng`, leaving `.venv` untouched. repeng 0.4
uses `np.float_`, gone in numpy 2: this script restores it as `np.float64` before importing repeng.
"""
from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import abba_times, bench_model, bench_parser, paired_ratio, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEERS = ["steering-vectors", "repeng"]
MEASURES = ("adherent", "degenerate", "distinct", "loss")  # per test prompt; paired metalens minus each peer


def setup(venv: Path = PEERS_VENV) -> None:
    """Create `venv` seeing the current environment's packages, and install the peers into it alone."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # An `import` line in a .pth runs at start-up; addsitedir also processes that dir's own .pth files
    # (the editable metalens install lives in one).
    Path(site, "metalens_base.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", *PEERS], check=True)
    print(f"ready: {venv}/bin/python bench/steer_peers.py ...")


def degenerate(text: str) -> bool:
    """Empty, or 6+ words of which fewer than 40 % are distinct (loops such as 'the the the')."""
    words = text.split()
    return not words or (len(words) >= 6 and len(set(words)) / len(words) < 0.4)


def distinct_share(text: str) -> float:
    """Share of distinct words in `text` (0 when empty): a cheap fluency measure, 1 = no repeats."""
    words = text.split()
    return len(set(words)) / len(words) if words else 0.0


def _metalens(model, positive, negative, positions, layer):
    from metalens.steering import train_steering_vector

    vec = train_steering_vector(model, positive, negative, layers=[layer], positions=positions)
    return lambda s: contextlib.nullcontext(vec.edits(model, s))


def _steering_vectors(model, positive, negative, positions, layer):
    from steering_vectors import train_steering_vector

    vec = train_steering_vector(model.hf, model.tokenizer, list(zip(positive, negative)), layers=[layer],
                                layer_type="decoder_block", read_token_index=-1, show_progress=False)

    @contextlib.contextmanager
    def steer(s):
        with vec.apply(model.hf, multiplier=s, min_token_index=0):
            yield None

    return steer


def _repeng(model, positive, negative, positions, layer):
    import numpy as np

    if not hasattr(np, "float_"):
        np.float_ = np.float64  # repeng 0.4 names np.float_ (removed in numpy 2) in its annotations
    from repeng import ControlModel, ControlVector, DatasetEntry

    control = ControlModel(model.hf, [layer])  # wraps block `layer` in place; unwrapped after each use
    try:
        vec = ControlVector.train(control, model.tokenizer, [DatasetEntry(p, n) for p, n in zip(positive, negative)],
                                  hidden_layers=[layer])
    finally:
        control.unwrap()
    for other in range(model.n_layers):  # some repeng versions wrap every layer: give them nothing to add
        vec.directions.setdefault(other, np.zeros(model.d_model, np.float32))

    @contextlib.contextmanager
    def steer(s):
        wrapped = ControlModel(model.hf, [layer])
        try:
            wrapped.set_control(vec, s)
            yield None
        finally:
            wrapped.reset()
            wrapped.unwrap()

    return steer


LIBRARIES = {"metalens": _metalens, "steering-vectors": _steering_vectors, "repeng": _repeng}
MODULES = {"metalens": "metalens", "steering-vectors": "steering_vectors", "repeng": "repeng"}


def _importable(name: str) -> str | None:
    try:
        if name == "repeng":
            import numpy as np

            if not hasattr(np, "float_"):
                np.float_ = np.float64
        __import__(MODULES[name])
    except Exception as err:  # noqa: BLE001 - any failure: report it and skip the library
        return f"{type(err).__name__}: {err}"
    return None


def split_prompts(prompts: list[str], n_val: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint validation and test prompts drawn from one seeded shuffle of `prompts`."""
    if n_val + n_test > len(prompts):
        raise ValueError(f"--n-val {n_val} + --n-test {n_test} exceeds the rule's {len(prompts)} held-out prompts: "
                         "ask for fewer.")
    order = random.Random(seed).sample(range(len(prompts)), len(prompts))
    return [prompts[i] for i in order[:n_val]], [prompts[i] for i in order[n_val:n_val + n_test]]


def walk_strengths(score, grid, *, max_degenerate: float = 0.2, max_extensions: int = 3, factor: float = 2.0) -> dict:
    """Score `grid` (ascending |strength|) with `score(strength) -> {"adherence", "degenerate", ...}`, then
    extend by `factor` while the last strength is still the best and within `max_degenerate`; choose one.

    `score` is the only window onto prompts, so a caller that closes it over validation prompts alone
    cannot let test prompts move the choice. Returns {"steps", "stop", "extensions", "chosen"}.
    """
    steps = [{"strength": s, **score(s)} for s in sorted(grid, key=abs)]
    if not steps:
        raise ValueError("Give each library at least one non-zero strength.")
    extensions = 0
    while True:
        last, best = steps[-1], max(step["adherence"] for step in steps)
        if last["degenerate"] > max_degenerate:
            stop = "degenerate"
        elif last["adherence"] < best:
            stop = "fell"
        elif extensions >= max_extensions:
            stop = "cap"
        else:
            extensions += 1
            steps.append({"strength": last["strength"] * factor, **score(last["strength"] * factor)})
            continue
        break
    within = [step for step in steps if step["degenerate"] <= max_degenerate]
    if within:  # the best adherence, then the gentler strength
        chosen = max(within, key=lambda step: (step["adherence"], -abs(step["strength"])))
    else:  # nothing usable: the least broken, for the record
        chosen = min(steps, key=lambda step: (step["degenerate"], abs(step["strength"])))
    return {"steps": steps, "stop": stop, "extensions": extensions,
            "chosen": {"strength": chosen["strength"], "within_limit": bool(within)}}


def outcomes(model, steer, strength: float, prompts: list[str], checker, new: int, base: list[str] | None = None) -> dict:
    """Per-prompt outcomes of generating from `prompts` steered at `strength` (0: unsteered, no hooks)."""
    import math

    import metalens
    from metalens.steering import token_loss

    with steer(strength) if strength else contextlib.nullcontext() as edits:
        out = metalens.generate(model, prompts, max_new_tokens=new, chat=model.is_chat, edits=edits if strength else None)
    loss = token_loss(model, prompts, out.texts, chat=model.is_chat)  # hooks removed: the unsteered model's surprise
    result = {"adherent": [float(bool(ok)) for ok in checker(out.texts)],
              "degenerate": [float(degenerate(t)) for t in out.texts],
              "distinct": [distinct_share(t) for t in out.texts],
              "loss": [float(x) if math.isfinite(x) else None for x in loss], "texts": out.texts}
    if base is not None:
        result["changed"] = [float(a != b) for a, b in zip(out.texts, base)]
    return result


def summary(per_prompt: dict) -> dict:
    """Shares over prompts (adherence with a Wilson 95 % interval)."""
    from metalens.stats import wilson_ci

    n = len(per_prompt["adherent"])
    ci = wilson_ci(int(sum(per_prompt["adherent"])), n)
    losses = [x for x in per_prompt["loss"] if x is not None]  # None: an empty completion has no loss
    row = {"adherence": ci.estimate, "low": ci.low, "high": ci.high, "n": n,
           "degenerate": sum(per_prompt["degenerate"]) / n, "distinct": sum(per_prompt["distinct"]) / n,
           "loss": sum(losses) / len(losses) if losses else None}
    if "changed" in per_prompt:
        row["changed"] = sum(per_prompt["changed"]) / n
    return row


def paired_differences(test: dict, alpha: float = 0.05) -> list[dict]:
    """metalens minus each peer on every measure, paired over test prompts, Holm over all rows, with `mde`."""
    import numpy as np

    from metalens.power import family_alpha, mde_paired_mean
    from metalens.stats import add_holm, paired_test

    rows = []
    for peer in [name for name in test if name not in ("metalens", "unsteered")]:
        for measure in MEASURES:
            a, b = (np.asarray(test[name][measure], dtype=float) for name in ("metalens", peer))  # None -> NaN
            t = paired_test(a, b)  # drops prompts where either side is NaN (an empty completion's loss)
            diff = (a - b)[np.isfinite(a - b)]
            rows.append({"peer": peer, "measure": measure, "mean_diff": t.mean_diff, "low": t.low, "high": t.high,
                         "p": t.p, "n": t.n, "sd_diff": float(np.std(diff, ddof=1)) if len(diff) > 1 else None})
    add_holm(rows)
    for row in rows:
        level = family_alpha(alpha, row["n_comparisons"])
        row["null"] = not row["p_holm"] < alpha
        sd, design = row["sd_diff"], "paired t over test prompts"
        if sd is None:
            row["mde"] = {"value": None, "design": design + ": under 2 prompts scored", "n": row["n"], "alpha": level,
                          "power": 0.8}
            continue
        if sd == 0:  # no prompt differed: the t design has no spread to scale by; use one discordant prompt's
            sd = float(np.std([1.0] + [0.0] * (row["n"] - 1), ddof=1))
            design += ", sd floored at one discordant prompt"
        try:
            value = mde_paired_mean(sd, row["n"], alpha=level)
        except ValueError:  # too few prompts for 80 % power at this level within the solver's range (tiny runs)
            value, design = None, design + ": out of reach at this n"
        row["mde"] = {"value": value, "design": design, "n": row["n"], "alpha": level, "power": 0.8}
    return rows


def speed(model, arms: dict, prompts: list[str], new: int, repeats: int) -> dict:
    """ABBA-timed generation of every arm ({name: steer context at its strength, or None}), paired ratios."""
    import metalens

    eos = [model.tokenizer.eos_token_id]  # every call makes exactly `new` tokens, so time compares hooks alone

    def arm(steer):
        def call():
            with steer() if steer else contextlib.nullcontext() as edits:
                metalens.generate(model, prompts, max_new_tokens=new, chat=model.is_chat, edits=edits, mask_ids=eos)
        return call

    load, wall, cpu = os.getloadavg(), time.perf_counter(), time.process_time()
    times = abba_times({name: arm(steer) for name, steer in arms.items()}, repeats, model.device)
    result = {"prompts": len(prompts), "new_tokens": new, "repeats": repeats, "seconds": times,
              "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
              "load_before": list(load), "load_after": list(os.getloadavg()),
              "torch_threads": __import__("torch").get_num_threads(),
              "peer_over_metalens": {name: paired_ratio(times[name], times["metalens"]).to_dict()
                                     for name in arms if name not in ("metalens", "unsteered") and "metalens" in arms},
              "over_unsteered": {name: paired_ratio(times[name], times["unsteered"]).to_dict()
                                 for name in arms if name != "unsteered"}}
    return result


def main(argv=None) -> dict:
    from metalens.options import nonneg_int, positive_float, positive_int, probability

    parser = bench_parser(__doc__)
    parser.add_argument("--setup", action="store_true", help=f"create {PEERS_VENV.name} with the peers and exit")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, 3 + 3 prompts, 4 tokens, one strength each")
    parser.add_argument("--layer", type=nonneg_int, default=None, help="block whose output is steered (default: middle)")
    parser.add_argument("--rule", default="ocean", help="a shipped rule (pairs, held-out prompts, keyword checker)")
    parser.add_argument("--n-val", type=positive_int, default=16, help="validation prompts (choose strengths)")
    parser.add_argument("--n-test", type=positive_int, default=16, help="test prompts (scored once)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the validation/test split")
    parser.add_argument("--new", type=positive_int, default=24, help="new tokens per prompt")
    parser.add_argument("--max-degenerate", type=probability, default=0.2)
    parser.add_argument("--max-extensions", type=nonneg_int, default=3, help="doublings past each grid's end")
    parser.add_argument("--repeats", type=positive_int, default=6, help="ABBA rounds of the speed comparison (>= 2)")
    parser.add_argument("--speed-prompts", type=positive_int, default=2, help="test prompts per timed call")
    for name, default in (("metalens", [0.5, 1, 2, 4]), ("steering-vectors", [0.5, 1, 2, 4]), ("repeng", [64, 256, 1024])):
        parser.add_argument(f"--{name}", type=positive_float, nargs="+", default=default, help=f"{name}'s strengths")
    args = parser.parse_args(argv)
    if args.setup:
        setup()
        return {}
    if args.repeats < 2 or args.n_test < 2:
        parser.error(f"--repeats and --n-test must be >= 2 for intervals, not {args.repeats} and {args.n_test}")
    from metalens.steering import checker_for, pairs_for_rule
    from metalens.steering.rules import find_rule, heldout_prompts

    if args.smoke:
        args.model, args.n_val, args.n_test, args.new, args.max_extensions, args.repeats = "tiny", 3, 3, 4, 1, 2
    rule = find_rule(args.rule)
    val, test_prompts = split_prompts(heldout_prompts(rule), args.n_val, args.n_test, args.seed)
    wall, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()
    model = bench_model(args.model, args.device, args.dtype)
    layer = model.check_layer(args.layer if args.layer is not None else model.n_layers // 2)
    positive, negative, positions = pairs_for_rule(rule)
    checker = checker_for(rule, model, positive, negative)
    print(f"model={model.name} layer={layer} rule={rule.name} pairs={len(positive)} validation={len(val)} "
          f"test={len(test_prompts)} new={args.new}")
    base = outcomes(model, None, 0.0, test_prompts, checker, args.new)
    test, walks, arms, skipped = {"unsteered": base}, {}, {"unsteered": None}, {}
    for name, build in LIBRARIES.items():
        why = _importable(name)
        if why:
            skipped[name] = why
            print(f"skipping {name}: not importable ({why}); run `python bench/steer_peers.py --setup` and use "
                  f"{PEERS_VENV.name}/bin/python")
            continue
        started = time.perf_counter()
        steer = build(model, positive, negative, positions, layer)
        train_s = time.perf_counter() - started
        grid = getattr(args, name.replace("-", "_"))[: 1 if args.smoke else None]

        def on_validation(strength, steer=steer):
            row = summary(outcomes(model, steer, strength, val, checker, args.new))
            print(f"  {name:18s} validation strength {strength:8g}: adherence {row['adherence']:.2f}, "
                  f"degenerate {row['degenerate']:.2f}")
            return row

        walks[name] = walk_strengths(on_validation, grid, max_degenerate=args.max_degenerate,
                                     max_extensions=args.max_extensions)
        walks[name]["train_s"] = train_s
        chosen = walks[name]["chosen"]["strength"]
        test[name] = outcomes(model, steer, chosen, test_prompts, checker, args.new, base=base["texts"])
        arms[name] = lambda steer=steer, chosen=chosen: steer(chosen)
        print(f"{name}: stopped ({walks[name]['stop']}) after {len(walks[name]['steps'])} strengths, chose {chosen:g}")
    summaries = {name: summary(per) for name, per in test.items()}
    print(f"{'test prompts':18s} {'strength':>8s} {'adherence [95% CI]':>22s} {'degenerate':>10s} {'distinct':>8s} "
          f"{'loss':>6s}")
    for name, row in summaries.items():
        strength = walks[name]["chosen"]["strength"] if name in walks else 0.0
        loss = "-" if row["loss"] is None else format(row["loss"], "6.2f")
        print(f"{name:18s} {strength:8g} {row['adherence']:8.2f} [{row['low']:.2f}, {row['high']:.2f}]"
              f"{row['degenerate']:11.2f} {row['distinct']:8.2f} {loss}")
    diffs = paired_differences(test) if "metalens" in test else []
    for d in diffs:
        print(f"metalens - {d['peer']:16s} {d['measure']:10s} {d['mean_diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
              f" p_holm={d['p_holm']:.3g} mde={d['mde']['value']}")
    timing = speed(model, arms, test_prompts[:args.speed_prompts], args.new, args.repeats)
    for name, r in timing["peer_over_metalens"].items():
        print(f"speed: {name} seconds / metalens seconds {r['median']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
    result = {"model": model.name, "layer": layer, "rule": rule.name, "seed": args.seed, "new_tokens": args.new,
              "max_degenerate": args.max_degenerate, "max_extensions": args.max_extensions,
              "validation_prompts": val, "test_prompts": test_prompts, "walks": walks,
              "test": {name: {"strength": walks[name]["chosen"]["strength"] if name in walks else 0.0,
                              **summaries[name], "per_prompt": per} for name, per in test.items()},
              "paired_differences": diffs, "speed": timing, "skipped": skipped,
              "run": {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                      "load_before": list(load), "load_after": list(os.getloadavg())}}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
