"""`metalens heads`, `metalens emergent-heads`, `metalens lens`, `metalens features` and `metalens sensitivity
emergent-heads`: thin wrappers over the circuits workflows."""
from __future__ import annotations

import argparse

from metalens.options import (add_data_arg, add_layers_arg, add_model_args, add_out_arg, add_seed_arg, check_out,
                              existing_dir, existing_file, int_range, load_model_from_args, mark_out, nonneg_int,
                              positive_int)
from metalens.sensitivity_cli import add_sweep_args, print_sweep
from metalens.stats import bounds_text


def task_arg(text: str) -> str:
    """A `type=` for --task: a shipped task's name, or an existing .jsonl / .csv file of pairs."""
    from metalens.circuits.tasks import TASKS

    if text in TASKS:
        return text
    if not text.lower().endswith((".jsonl", ".csv")):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a task ({', '.join(TASKS)}) nor a .jsonl / .csv file of pairs")
    return str(existing_file(text))


def _check_split(args) -> None:
    """Refuse an --eval-n that leaves fewer than 2 pairs on either side, before the model loads."""
    from metalens.circuits.tasks import TASKS, load_task, read_pairs_csv

    if args.eval_n is None:
        return
    if not args.faithfulness:
        raise ValueError("--eval-n holds pairs out for the faithfulness curves: add --faithfulness or drop --eval-n.")
    if args.task in TASKS:
        n, where = args.n, f"--n {args.n}"
    elif args.task.lower().endswith(".csv"):
        n, where = min(args.n, len(read_pairs_csv(args.task)[1])), f"{args.task} (first --n {args.n} rows)"
    else:
        n, where = len(load_task(args.task)), args.task
    if args.eval_n < 2 or n - args.eval_n < 2:
        raise ValueError(f"--eval-n {args.eval_n}: {where} gives {n} pairs, so {n - args.eval_n} would be left to "
                         "discover the circuits on; keep at least 2 pairs on each side.")


def _heads(args) -> None:
    from metalens.circuits.heads import HeadsConfig, run_heads
    from metalens.circuits.tasks import TASKS, check_pairs_file

    check_out(args.out, "heads")
    if args.task not in TASKS:
        check_pairs_file(args.task)  # a malformed pairs file is refused before the model loads
    _check_split(args)
    cfg = HeadsConfig(task=args.task, n=args.n, methods=tuple(args.methods), ig_steps=args.ig_steps,
                      metric=args.metric, seed=args.seed, detect=not args.no_detect, show=tuple(args.show),
                      faithfulness=args.faithfulness, eval_n=args.eval_n)
    model = load_model_from_args(args)
    result = run_heads(model, cfg)
    mark_out(args.out, "heads")
    result.save(args.out)
    for method, seconds in result.seconds.items():
        rho = result.spearman_vs_exact.get(method)
        print(f"{method}: {seconds:.1f} s" + (f", Spearman vs exact {rho:.3f}" if rho is not None else "")
              + f", top heads {result.top(method, 3)}")
    if result.split:
        print(f"edge scores on {len(result.split['discover'])} pairs, curves on {len(result.split['evaluate'])} others")
    for method, c in result.faithfulness.items():
        cpr, cmd = c["cpr_interval"], c["cmd_interval"]
        print(f"{method}: MIB CPR {c['cpr_signed']:.3f} {bounds_text(cpr['low'], cpr['high'], cpr['n'])}, "
              f"CMD {c['cmd_abs']:.3f} {bounds_text(cmd['low'], cmd['high'], cmd['n'])} over {c['total_edges_mib']} edges (q/k/v separate); "
              f"metalens' earlier convention CPR {c['cpr']:.3f}, CMD {c['cmd']:.3f}")
    if result.detectors:
        print(f"induction heads {result.top('induction', 3)}")
    print(f"wrote {args.out}/results.json and report.html")


def _emergent(args) -> None:
    from metalens.circuits.emergent import EmergentConfig, run_emergent_heads

    from metalens.circuits.tasks import TASKS, check_pairs_file

    check_out(args.out, "emergent-heads")
    if args.task not in TASKS:
        check_pairs_file(args.task)
    cfg = EmergentConfig(task=args.task, n=args.n, n_test=args.n_test, metric=args.metric, n_boot=args.n_boot,
                         n_edges=args.n_edges, ig_steps=args.ig_steps, n_problems=args.n_problems,
                         device=args.device, seed=args.seed,
                         heldout_from=None if args.heldout_from is None else str(args.heldout_from), pairs=args.pairs,
                         own_tokens=args.own_tokens, max_checkpoints=args.max_checkpoints)
    result = run_emergent_heads(args.base, args.post, cfg)
    mark_out(args.out, "emergent-heads")
    result.save(args.out)
    print(f"emergent {result.emergent}\nlost {result.lost}\nshared {len(result.shared)} heads")
    for row in result.emergent_cohorts:
        print(f"  L{row['head'][0]}.H{row['head'][1]}: in the circuit from step {row['first_seen']}, {row['fate']}")
    if result.did:
        d = result.did["metric"]
        print(f"difference in differences ({result.metadata.get('metric', cfg.metric)} damage, post - base): {d['mean_diff']:+.3f} "
              f"[{d['low']:+.3f}, {d['high']:+.3f}] over {d['n']} test pairs")
    if result.heldout is None and cfg.n_problems:
        print("no held-out problems from a posttrain run: accuracy under ablation skipped")
    print(f"wrote {args.out}/results.json and report.html")


def _lens(args) -> None:
    from metalens.circuits.lens import LensConfig, run_lens

    check_out(args.out, "lens")
    cfg = LensConfig(prompt=args.prompt, target=args.target, backend=args.backend,
                     layers=None if args.layers is None else tuple(args.layers))
    model = load_model_from_args(args)
    result = run_lens(model, cfg)
    mark_out(args.out, "lens")
    result.save(args.out)
    last = [row[-1] for row in result.top_token]
    print(f"top next token after each block{'' if cfg.layers is None else f' of {result.blocks}'}: {last}")
    if result.target_prob is not None:
        print(f"p({result.target_token!r}) after each block: {[round(row[-1], 4) for row in result.target_prob]}")
    print(f"wrote {args.out}/results.json and report.html")


def _features(args) -> None:
    from metalens.circuits.feature_attribution import check_sae_fits
    from metalens.circuits.features import FeaturesConfig, run_features
    from metalens.circuits.tasks import TASKS, check_pairs_file
    from metalens.sae import load_sae, read_corpus

    check_out(args.out, "features")
    if args.task not in TASKS:
        check_pairs_file(args.task)
    sae = load_sae(args.sae)  # a malformed SAE folder is refused before the model loads
    if not args.no_cards:
        read_corpus(args.data)  # and so is an unreadable corpus
    cfg = FeaturesConfig(task=args.task, n=args.n, metric=args.metric, seed=args.seed, method=args.method,
                         ig_steps=args.ig_steps, top=args.top, controls=args.controls,
                         n_boot=args.n_boot, cards=not args.no_cards, data=None if args.data is None else str(args.data),
                         card_texts=args.card_texts, max_length=args.max_length)
    model = load_model_from_args(args)
    check_sae_fits(model, sae)  # an SAE of another site or model is refused before --out is claimed
    mark_out(args.out, "features")
    result = run_features(model, sae, cfg)
    result.save(args.out)
    print(f"{cfg.method} {result.seconds[cfg.method]:.1f} s, exact patching of {len(result.top_features)} features "
          f"{result.seconds['exact']:.1f} s: Spearman {result.spearman_vs_exact:.3f}, signs agree on "
          f"{result.sign_agreement:.0%}; with {len(result.controls)} controls, Spearman "
          f"{result.spearman_with_controls:.3f}")
    t = result.totals
    print(f"whole site patched {t['site_total']['mean']:+.4f}; {cfg.method}: features sum {t['features_sum']['mean']:+.4f}, "
          f"error term {t['error']['mean']:+.4f}")
    for row in result.rows[:5]:
        a, e = row["attribution"], row["exact"]
        print(f"  feature {row['feature']}: {cfg.method} {a['mean']:+.4f} {bounds_text(a['low'], a['high'], a['n'], '.4f')}, "
              f"exact {e['mean']:+.4f} {bounds_text(e['low'], e['high'], e['n'], '.4f')}")
    print(f"wrote {args.out}/results.json, cards.json and report.html")


def register(sub) -> None:
    """Add the circuits verbs to the `metalens` parser."""
    metrics = ["logit_diff", "logprob", "kl", "prob_diff"]
    p = sub.add_parser("heads", help="per-head attribution / EAP-IG / exact patching scores and head detectors")
    add_model_args(p)
    p.add_argument("--task", default="arithmetic", type=task_arg,
                   help="arithmetic, word, induction, factual, ioi, greater-than, pairs.jsonl, or pairs.csv "
                        "(clean,corrupted,answer,wrong_answer or the EAP-IG greater-than / IOI files)")
    add_out_arg(p)
    p.add_argument("--n", type=positive_int, default=16, help="prompt pairs (>= 1)")
    p.add_argument("--methods", nargs="+", default=["attribution", "ig", "exact"], choices=["attribution", "ig", "exact"])
    p.add_argument("--ig-steps", type=positive_int, default=5, help="integration steps of EAP-IG (>= 1)")
    p.add_argument("--metric", default=None, choices=metrics,
                   help="default: the task's own (prob_diff for greater-than, logit_diff otherwise)")
    add_seed_arg(p)
    p.add_argument("--no-detect", action="store_true", help="skip the induction/previous/duplicate detectors")
    p.add_argument("--faithfulness", action="store_true",
                   help="also run each method's top-k%% edge circuits: faithfulness curves, CPR and CMD (MIB style)")
    p.add_argument("--eval-n", type=positive_int, default=None,
                   help="with --faithfulness: hold out this many of the pairs (drawn with --seed) for the curves "
                        "and their intervals; edge scores come from the rest (>= 2 on each side; default: the "
                        "same pairs for both)")
    p.add_argument("--show", nargs="+", default=[], metavar="L.H",
                   help="heads whose attention pattern on the first clean prompt the report shows, e.g. 5.1 L11.H2")
    p.set_defaults(func=_heads)
    e = sub.add_parser("emergent-heads", help="circuit heads the post-trained model gained or lost, with ablation check")
    e.add_argument("--base", default="gemma-3-270m", help="the base model: embedded name, local dir or hub id")
    e.add_argument("--post", "--run", dest="post", required=True, type=existing_dir,
                   help="checkpoint dir (full or LoRA adapter) or a `metalens posttrain` run dir (--run: the same)")
    e.add_argument("--task", default="arithmetic", type=task_arg)
    add_out_arg(e)
    e.add_argument("--n", type=positive_int, default=12, help="prompt pairs that pick the heads")
    e.add_argument("--n-test", type=positive_int, default=12, help="other prompt pairs the checks run on")
    e.add_argument("--metric", default=None, choices=metrics,
                   help="task metric (default: the task's own); kl = KL(intact || edited), the emergent-heads paper's metric")
    e.add_argument("--n-boot", type=nonneg_int, default=10, help="bootstrap resamples for head recurrence (0: skip)")
    e.add_argument("--n-edges", type=positive_int, default=100)
    e.add_argument("--ig-steps", type=positive_int, default=3)
    e.add_argument("--n-problems", type=nonneg_int, default=20, help="held-out problems for accuracy under ablation (0: skip)")
    e.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_seed_arg(e)
    e.add_argument("--heldout-from", default=None, type=existing_dir,
                   help="posttrain run or checkpoint dir holding the held-out split (default: --post)")
    e.add_argument("--pairs", default="task", choices=["task", "own"],
                   help="own: pairs from the models' own greedy solution openings (post = clean, base = corrupted; kl)")
    e.add_argument("--own-tokens", type=positive_int, default=8, help="--pairs own: tokens of each solution opening")
    e.add_argument("--max-checkpoints", type=nonneg_int, default=4,
                   help="checkpoints of a posttrain run traced for the cohort view (0: every one)")
    e.set_defaults(func=_emergent)
    lens = sub.add_parser("lens", help="logit lens: top token and probability after every block, per position")
    add_model_args(lens)
    lens.add_argument("--prompt", required=True)
    lens.add_argument("--target", default=None, help="also track this text's first token, e.g. ' Paris'")
    lens.add_argument("--backend", default="hf", choices=["hf", "transformer_lens", "nnsight"])
    add_layers_arg(lens, default_note="every block", help="blocks to read out")
    add_out_arg(lens)
    lens.set_defaults(func=_lens)
    f = sub.add_parser("features", help="attribution patching over an SAE's features at its site, exact check, feature cards")
    add_model_args(f)
    f.add_argument("--task", default="greater-than", type=task_arg,
                   help="arithmetic, word, induction, factual, ioi, greater-than (default), pairs.jsonl or pairs.csv")
    f.add_argument("--sae", type=existing_dir, required=True,
                   help="the dictionary's folder (SAELens layout, a Gemma Scope folder, or `metalens sae train`'s OUT/sae)")
    add_out_arg(f)
    f.add_argument("--n", type=positive_int, default=16, help="prompt pairs (>= 1)")
    f.add_argument("--metric", default=None, choices=["logit_diff", "logprob", "prob_diff"],
                   help="default: the task's own (prob_diff for greater-than, logit_diff otherwise); no kl, whose "
                        "gradient is 0 at the clean run")
    f.add_argument("--method", default="attribution", choices=["attribution", "ig"],
                   help="attribution: the gradient at the clean run (default); ig: averaged over --ig-steps points "
                        "from the corrupted site activation to the clean one")
    f.add_argument("--ig-steps", type=positive_int, default=5, help="integration steps of --method ig (>= 1)")
    f.add_argument("--top", type=int_range(1, 1000), default=10,
                   help="features with the largest |mean attribution| patched exactly and given cards (default 10)")
    f.add_argument("--controls", type=int_range(0, 1000), default=5,
                   help="random other features the corruption moves, patched exactly too (default 5; 0: none)")
    f.add_argument("--n-boot", type=nonneg_int, default=1000, help="bootstrap resamples over pairs (0: no intervals)")
    add_data_arg(f, help="the cards' corpus: .txt (one text per line), .jsonl or .csv (see `metalens sae train`); "
                         "default: Python's own help texts")
    f.add_argument("--card-texts", type=int_range(1, 1_000_000), default=200,
                   help="corpus texts the cards read, from the top of the file (default 200)")
    f.add_argument("--max-length", type=int_range(2, 1_000_000), default=64,
                   help="truncate corpus texts to this many tokens (default 64)")
    f.add_argument("--no-cards", action="store_true", help="skip the feature cards")
    add_seed_arg(f)
    f.set_defaults(func=_features)


def head_arg(text: str) -> tuple[int, int]:
    """A `type=` for --heads: one head as L.H or L<l>.H<h>, e.g. 5.1 or L5.H1."""
    from metalens.circuits.attention import parse_heads

    try:
        return parse_heads([text])[0]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _sensitivity_emergent(args) -> None:
    from metalens.circuits.emergent import EmergentConfig
    from metalens.circuits.attention import check_heads
    from metalens.circuits.emergent_sensitivity import EmergentSensitivityConfig, run_emergent_heads_sensitivity
    from metalens.circuits.tasks import TASKS, check_pairs_file

    out = check_out(args.out, "sensitivity-emergent-heads")
    if args.task not in TASKS:
        check_pairs_file(args.task)
    emergent = EmergentConfig(task=args.task, n=args.n, n_test=args.n_test, metric=args.metric, n_boot=args.n_boot,
                              n_edges=args.n_edges, ig_steps=args.ig_steps, n_problems=0, n_random=args.n_random,
                              max_emergent=args.max_emergent, device=args.device)
    config = EmergentSensitivityConfig(emergent, plant=args.plant, heads=tuple(args.heads) if args.heads else None,
                                       strengths=tuple(args.strengths), seeds=args.seeds)
    model = load_model_from_args(args)
    if config.heads:
        check_heads(model, config.heads)
    mark_out(out, "sensitivity-emergent-heads")
    where = "the planted heads" if config.plant == "heads" else "the MLPs of the planted heads' blocks (control)"
    print_sweep(run_emergent_heads_sensitivity(model, config, out=out), out, f"planted in {where}")


def register_sensitivity(subparsers) -> None:
    """Add `emergent-heads` under `metalens sensitivity`: the detection curve of two planted answer-writing heads."""
    from metalens.circuits.emergent_sensitivity import DEFAULT_STRENGTHS

    p = subparsers.add_parser("emergent-heads", help="plant two heads that write the task's answer into a copy of the "
                              "model at several strengths and count how often run_emergent_heads names and validates "
                              "them (--plant mlp: the MLP-only control)")
    add_model_args(p)
    add_sweep_args(p, strengths=DEFAULT_STRENGTHS, strengths_help="planted strengths in mean output norms of the "
                   "carrier, written toward each prompt's answer (0 = unplanted)")
    p.add_argument("--task", default="arithmetic", type=task_arg)
    p.add_argument("--plant", default="heads", choices=["heads", "mlp"],
                   help="heads: the planted heads carry the change; mlp: the MLPs of their blocks do (the control)")
    p.add_argument("--heads", type=head_arg, nargs="+", default=None, metavar="L.H",
                   help="the planted heads (default: two drawn per seed outside the base circuit)")
    p.add_argument("--n", type=positive_int, default=12, help="prompt pairs that pick the heads")
    p.add_argument("--n-test", type=positive_int, default=12, help="other prompt pairs the checks run on")
    p.add_argument("--metric", default=None, choices=["logit_diff", "logprob", "kl", "prob_diff"],
                   help="task metric (default: the task's own)")
    p.add_argument("--n-edges", type=positive_int, default=100)
    p.add_argument("--ig-steps", type=positive_int, default=3)
    p.add_argument("--n-random", type=positive_int, default=3,
                   help="layer-matched random groups, the ablation's control")
    p.add_argument("--max-emergent", type=positive_int, default=10, help="emergent heads ablated together")
    p.add_argument("--n-boot", type=nonneg_int, default=0,
                   help="bootstrap resamples for head recurrence (not part of the verdict; default 0: skip)")
    p.set_defaults(func=_sensitivity_emergent)
