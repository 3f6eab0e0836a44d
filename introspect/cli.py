"""`metalens introspect train|rollouts|eval|compare|sample`: parse and check arguments, call the
workflow (run_train / run_eval / run_compare / run_sample, or generate_rollouts), print.

Every value is checked before the model loads; --out is checked (`check_out`) first and claimed
(`mark_out`) only once the inputs are valid, so a refused command leaves nothing behind.
"""
from __future__ import annotations

import argparse
import math

from metalens.options import (add_fast_arg, add_model_args, add_out_arg, add_seed_arg, check_out, existing_dir, existing_file,
                              float_range, int_range, load_model_from_args, mark_out, nonneg_float, nonneg_int,
                              out_path, positive_float, positive_int, probability)
from metalens.sensitivity_cli import add_sweep_args, print_sweep
from metalens.stats import bounds_text
from metalens.tasks.arithmetic import LEVELS


def _share(text: str) -> float:
    """A `type=` for a share strictly between 0 and 1 (--test-fraction)."""
    value = float_range(0, 1, low_open=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a finite number in (0, 1), got {value:g}")
    return value


def _folds(text: str) -> int:
    """A `type=` for --cv: 0 (none) or k >= 2 folds."""
    value = nonneg_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 (no cross-validation) or k >= 2 folds, got 1")
    return value


def _model(args, kind: str, trained=()):
    """Load the model once the inputs are checked, check the `trained` runs' heads against it, then
    claim --out for this verb (a refused command writes nothing)."""
    model = load_model_from_args(args)
    for run in trained:
        run.head.check_fits(model)
    mark_out(args.out, kind)
    return model


def _trained(path):
    """The TrainResult of a train run's folder (or its head/ folder), its files checked."""
    from metalens.introspect.workflows.train import TrainResult

    return TrainResult.load(path)


def _bounds(low, high, n: int, sign: str = "+") -> str:
    """'[+0.100, +0.200]', or '[n/a (5 units)]' where the interval was not computed (too few units)."""
    return bounds_text(low, high, n, f"{sign}.3f")


def _gap(name: str, gap: dict) -> str:
    return f"{name} {gap['gap']:+.3f} {_bounds(*gap['ci95'], gap['n_groups'])}"


def _train(args) -> None:
    from metalens.introspect.heads.bins import BinSpec, geometric_edges
    from metalens.introspect.rollouts.store import read_questions
    from metalens.introspect.workflows.train import TrainConfig, run_train

    check_out(args.out, "introspect-train")
    if args.task == "jsonl" and not args.tasks:
        raise ValueError("--task jsonl needs --tasks FILE with one {\"prompt\", \"answer\"} object per line.")
    trained = args.mode != "head"  # --steps: L-BFGS iterations in mode head, optimiser steps in lora / full
    config = TrainConfig(questions=read_questions(args.tasks) if args.task == "jsonl" else None,
                         rollouts=args.rollouts, task="arithmetic" if args.task == "jsonl" else args.task,
                         n_questions=args.n_tasks, levels=tuple(args.levels), n_samples=args.n_samples,
                         max_new_tokens=args.max_new_tokens, temperature=args.temperature, min_p=args.min_p,
                         batch_questions=args.batch_questions, mode=args.mode,
                         spec=BinSpec(edges=geometric_edges(args.n_length_bins)), length_bins=args.length_bins,
                         steps=args.head_steps if trained else (args.steps or 100),
                         train_steps=args.steps if trained else None, lr=args.lr, kl_coef=args.kl_coef,
                         warmup=args.warmup, accum=args.accum, batch_size=args.batch_size, grad_clip=args.grad_clip,
                         top_k=args.top_k, value_labels=args.value_labels, value_window=args.value_window,
                         n_value_states=args.n_value_states, test_fraction=args.test_fraction, seed=args.seed)
    res = run_train(_model(args, "introspect-train"), config, out=args.out)
    for level, rate in res.solve_rates.items():
        print(f"level {level}: solve rate {rate:.3f}")
    print(f"held-out reward AUROC (all positions): head {res.heldout_auroc:.3f}, "
          f"shuffled labels {res.shuffled_auroc:.3f} ({len(res.test_tasks)} held-out questions)")
    if res.kl_normal_vocab_heldout is not None:
        drift = res.normal_vocab_heldout
        print(f"held-out KL(frozen || trained) over the normal vocabulary: {drift['kl']:.4f} nats/token; "
              f"NLL of the sampled tokens {drift['nll_frozen']:.3f} -> {drift['nll_trained']:.3f}; "
              f"top-1 agreement {drift['top1_agreement']:.3f}")
    if res.value_labels:
        print(f"value labels: {res.value_labels['state_counts']} rollouts per reward state; value vs graded reward "
              f"AUROC {res.value_labels['value_vs_graded']['auroc']:.3f}")
    print(f"wrote {args.out}/results.json, {args.out}/report.html and {args.out}/head")


def _eval(args) -> None:
    from metalens.introspect.workflows.eval import EvalConfig, run_eval

    check_out(args.out, "introspect-eval")
    trained = _trained(args.train)
    config = EvalConfig(trained, rollouts=args.rollouts, fractions=tuple(args.fractions),
                        verbal=not args.no_verbal, cv=args.cv, n_shuffles=args.n_shuffles, seed=args.seed)
    res = run_eval(_model(args, "introspect-eval", [trained]), config, out=args.out)
    blocks = [("held-out", res.fractions, res.all_positions)]
    if res.cv:
        blocks.append((f"{args.cv}-fold CV", res.cv["fractions"], res.cv["all_positions"]))
    for name, fractions, everywhere in blocks:
        for f in fractions + [{"fraction": "all", **everywhere}]:
            aurocs = ", ".join(f"{k} AUROC {f[k]['auroc']:.3f}" for k in ("head", "probe", "shuffled", "verbal") if k in f)
            print(f"{name} prefix {f['fraction']}: {aurocs}; {_gap('head - shuffled', f['head_vs_shuffled'])}")
        head_all = everywhere["head"]
        print(f"{name}, all positions: head Brier {head_all['brier']:.3f}, ECE {head_all['ece']:.3f}, "
              f"corr with correctness {head_all['corr']:.3f}, accuracy at 0.5 {head_all['acc@0.5']:.3f}")
        within, chance = everywhere["within_problem"]["head"], everywhere["head_above_chance"]
        print(f"{name}, all positions: head AUROC - 0.5 {chance['estimate']:+.3f} "
              f"{_bounds(chance['low'], chance['high'], chance['n'])}; within-problem head AUROC "
              f"{within['estimate']:.3f} {_bounds(within['low'], within['high'], within.get('n', 0), '')} over {within['n_mixed']} of {within['n_problems']} problems with mixed outcomes "
              f"(shuffled heads {everywhere['within_problem']['shuffled']:.3f})")
    print(f"wrote {args.out}/results.json and {args.out}/report.html")


def _sample(args) -> None:
    from metalens.introspect.sampling.comparisons import comparison_text
    from metalens.introspect.workflows.sample import SampleConfig, run_sample

    check_out(args.out, "introspect-sample")
    trained = _trained(args.train)
    config = SampleConfig(trained, rollouts=args.rollouts, alphas=args.alphas, beta=args.beta,
                          every=args.every, live=args.live, live_alphas=tuple(args.live_alphas), cv=args.cv,
                          utility=args.utility, utility_alphas=tuple(args.utility_alphas),
                          utility_betas=tuple(args.utility_betas), branch=not args.no_branch, seed=args.seed)
    res = run_sample(_model(args, "introspect-sample", [trained]), config, out=args.out)
    for row in res.matched:
        base = row["majority_at_same_tokens"]  # NaN outside the tokens majority@1..N spans: not a figure
        base = f"{base:.3f}" if math.isfinite(base) else "n/a (outside majority's token range)"
        print(f"{row['method']} alpha={row['alpha']:g}: acc {row['accuracy']:.3f} at {row['tokens']:.1f} tokens "
              f"(majority at same tokens: {base})")
    for row in (res.cv or {}).get("paired", []):
        if row.get("majority_n"):
            alpha = "" if row["alpha"] is None else f" alpha={row['alpha']:g}"
            print(f"{args.cv}-fold, all questions: {row['method']}{alpha}: acc {row['accuracy']:.3f} at "
                  f"{row['tokens']:.1f} tokens vs majority@{row['majority_n']} {row['majority_accuracy']:.3f} at "
                  f"{row['majority_tokens']:.1f}: {row['wins']} wins / {row['ties']} ties / {row['losses']} losses "
                  f"(sign p {row['p_sign']:.3f}), {row['difference']:+.3f} "
                  f"{_bounds(*row['ci95'], row['wins'] + row['ties'] + row['losses'])}, "
                  f"Holm p {row['p_holm']:.3f} of {row['n_comparisons']} comparisons")
    for row in res.live or []:
        print(f"live alpha={row['alpha']:g}: acc {row['accuracy']:.3f} at {row['tokens']:.1f} tokens, "
              f"{row['decode_steps']:.1f} steps, {row['seconds']:.2f} s per question ({row['n_problems']} questions)")
    for row in res.utility or []:
        majority = row["vs"]["majority"]
        versus = "" if majority.get("setting") is None else (
            f" vs majority@{majority['setting']} {majority['accuracy']:.3f}: {majority['difference']:+.3f} "
            f"{_bounds(*majority['ci95'], row['n_problems'])}")
        print(f"utility alpha={row['alpha']:g} beta={row['beta']:g}: acc {row['accuracy']:.3f} at {row['tokens']:.1f} "
              f"tokens, latency {row['latency']:.1f} steps, {row['branches']:.2f} branches{versus}")
    for row in res.comparisons or []:
        print(f"utility alpha={row['alpha']:g} beta={row['beta']:g} {comparison_text(row)}")
    print(f"wrote {args.out}/results.json and {args.out}/report.html")


def _compare(args) -> None:
    from metalens.introspect.workflows.compare import CompareConfig, run_compare

    check_out(args.out, "introspect-compare")
    trained = [_trained(path) for path in args.heads]  # every run's files checked before the model loads
    config = CompareConfig([str(h) for h in args.heads], n_boot=args.n_boot, seed=args.seed)
    res = run_compare(_model(args, "introspect-compare", trained), config, out=args.out)
    for head, score in res.scores.items():
        print(f"{head}: AUROC {score['auroc']:.3f}, Brier {score['brier']:.3f}, ECE {score['ece']:.3f}")
    for d in res.differences:
        holm = f"{d['p_holm']:.3f}" if math.isfinite(d["p_holm"]) else "n/a (no bootstrap on so few units)"
        print(f"{d['head']} - {d['reference']}: AUROC {d['auroc_diff']:+.3f} {_bounds(*d['ci95'], d['n_units'])}, "
              f"Holm p {holm} ({res.n_comparisons} comparisons, {res.n_units} units)")
    print(f"wrote {args.out}/results.json")


def _rollout_args(parser) -> None:
    """The arguments that say how rollouts are drawn (train and rollouts verbs)."""
    parser.add_argument("--n-tasks", type=positive_int, default=80, help="questions to draw")
    parser.add_argument("--levels", type=int_range(min(LEVELS), max(LEVELS)), nargs="+", default=[1, 2, 3, 4],
                        help=f"difficulty levels {min(LEVELS)}-{max(LEVELS)} (metalens.tasks.arithmetic.LEVELS)")
    parser.add_argument("--n-samples", type=positive_int, default=6, help="samples per question")
    parser.add_argument("--max-new-tokens", type=positive_int, default=40)
    add_fast_arg(parser)
    parser.add_argument("--temperature", type=nonneg_float, default=1.0, help="0 decodes greedily")
    parser.add_argument("--min-p", type=probability, default=None, help="min-p sampling (ZIP-RC: 0.1 at temperature 1.0)")
    parser.add_argument("--batch-questions", type=positive_int, default=1, help="questions per generation call")


def _rollouts(args) -> None:
    from metalens.introspect.rollouts.store import (few_shot_prefix, generate_rollouts, load_rollouts, solve_rates,
                                              task_questions)

    check_out(args.out, "introspect-rollouts")
    questions = task_questions(args.task, args.n_tasks, tuple(args.levels), args.seed)
    generate_rollouts(_model(args, "introspect-rollouts"), questions, args.out, args.n_samples, args.max_new_tokens, args.temperature,
                      args.seed, prefix=few_shot_prefix(task=args.task), progress=True, min_p=args.min_p,
                      batch_questions=args.batch_questions)
    for level, rate in solve_rates(load_rollouts(args.out)).items():
        print(f"level {level}: solve rate {rate:.3f}")
    print(f"wrote {args.out}/rollouts.jsonl and {args.out}/manifest.json")


def _sensitivity(args) -> None:
    from metalens.introspect.heads.bins import BinSpec, geometric_edges
    from metalens.introspect.sensitivity import (LabelNoiseSensitivityConfig, check_store,
                                                 run_label_noise_sensitivity)
    from metalens.introspect.workflows.train import TrainConfig

    check_out(args.out, "sensitivity-ziprc")
    train = TrainConfig(rollouts=args.rollouts, spec=BinSpec(edges=geometric_edges(args.n_length_bins)),
                        length_bins=args.length_bins, steps=args.steps, test_fraction=args.test_fraction,
                        seed=args.seed)
    config = LabelNoiseSensitivityConfig(args.rollouts, train, n_shuffles=args.n_shuffles,
                                         strengths=tuple(args.strengths), seeds=args.seeds)
    check_store(config)  # finished, unplanted, enough held-out units: refused before the model loads
    model = load_model_from_args(args)
    mark_out(args.out, "sensitivity-ziprc")
    print_sweep(run_label_noise_sensitivity(model, config, out=args.out), args.out)


def register_sensitivity(subparsers) -> None:
    """Add `ziprc` under `metalens sensitivity`: the reward head's detection curve against label reliability."""
    from metalens.introspect.sensitivity import DEFAULT_STRENGTHS

    sz = subparsers.add_parser("ziprc", help="train and evaluate the reward head on a rollout store with a known "
                                             "share of labels flipped, and count how often it is said to read "
                                             "correctness")
    add_model_args(sz)
    sz.add_argument("--rollouts", type=existing_dir, required=True,
                    help="a finished rollout store (`introspect rollouts`, or a train run's rollouts/ folder)")
    add_sweep_args(sz, strengths=DEFAULT_STRENGTHS, strength_type=probability, seeds=5,
                   seeds_help="seeds per strength, each flipping other samples", out_holds="runs/ and the store's "
                   "hidden states", strengths_help="label reliabilities 1 - 2 x flip share, each in [0, 1] (0: "
                   "coin-flip labels, the null; 1: the graded rewards as published)")
    sz.add_argument("--steps", type=positive_int, default=100, help="L-BFGS iterations of each head fit")
    sz.add_argument("--length-bins", default="fitted", choices=["geometric", "fitted"],
                    help="length-bin edges (default fitted, as results/ziprc-gemma)")
    sz.add_argument("--n-length-bins", type=positive_int, default=8)
    sz.add_argument("--test-fraction", type=_share, default=0.3, help="share of questions held out, in (0, 1)")
    sz.add_argument("--n-shuffles", type=positive_int, default=3, help="shuffled-label heads in the rule's baseline")
    add_seed_arg(sz)
    sz.set_defaults(func=_sensitivity)


def register(subparsers) -> None:
    """Add `introspect` with sub-verbs train, rollouts, eval, compare and sample."""
    from metalens.introspect.rollouts.store import TASKS

    intro = subparsers.add_parser("introspect", help="reward/length heads in reserved logits, adaptive sampling")
    sub = intro.add_subparsers(dest="introspect_verb", required=True)

    train = sub.add_parser("train", help="generate rollouts (resumable) and train the reserved-logit head")
    add_model_args(train)
    train.add_argument("--task", default="arithmetic", choices=[*TASKS, "jsonl"], help="built-in generator or jsonl")
    train.add_argument("--tasks", type=existing_file, default=None, help="JSONL of {prompt, answer} (with --task jsonl)")
    add_out_arg(train, help="output folder: rollouts, head, results (resumed)")
    train.add_argument("--rollouts", type=out_path, default=None,
                       help="rollout folder: a finished one is reused, else generated there (default OUT/rollouts)")
    _rollout_args(train)
    train.add_argument("--mode", default="head", choices=["head", "lora", "full"])
    train.add_argument("--steps", type=positive_int, default=None,
                       help="mode head: L-BFGS iterations (100); lora / full: optimiser steps (20 / 100)")
    train.add_argument("--head-steps", type=positive_int, default=100,
                       help="lora / full: L-BFGS iterations of the head-mode init and the baselines")
    train.add_argument("--lr", type=positive_float, default=None,
                       help="lora: 1e-3 constant; full: 1e-5 peak (warmup + cosine)")
    train.add_argument("--kl-coef", type=nonneg_float, default=None,
                       help="weight of KL(frozen || trained): lora 1, full 10")
    train.add_argument("--warmup", type=nonneg_int, default=5, help="full: warmup steps")
    train.add_argument("--accum", type=positive_int, default=4, help="full: micro-batches per optimiser step")
    train.add_argument("--batch-size", type=positive_int, default=None,
                       help="lora / full: samples per micro-batch (2 / 4)")
    train.add_argument("--grad-clip", type=nonneg_float, default=1.0, help="full: gradient-norm clip (0: none)")
    train.add_argument("--top-k", type=positive_int, default=32, help="full: frozen tokens kept in the KL, renormalised")
    train.add_argument("--length-bins", default="geometric", choices=["geometric", "fitted"],
                       help="length-bin edges: 1, 2, 4, ... or fitted to the rollouts' lengths")
    train.add_argument("--n-length-bins", type=positive_int, default=8)
    train.add_argument("--value-labels", action="store_true",
                       help="second stage: train on a first head's smoothed expected reward (ZIP-RC's value)")
    train.add_argument("--value-window", type=positive_int, default=64, help="last positions averaged into a value")
    train.add_argument("--n-value-states", type=int_range(2), default=7, help="reward states of the value-labelled head")
    train.add_argument("--test-fraction", type=_share, default=0.3, help="share of questions held out, in (0, 1)")
    add_seed_arg(train)
    train.set_defaults(func=_train)

    ro = sub.add_parser("rollouts", help="generate (or resume) a rollout store, e.g. another generator to evaluate on")
    add_model_args(ro)
    ro.add_argument("--task", default="words", choices=list(TASKS))
    add_out_arg(ro, help="rollout folder (resumed)")
    _rollout_args(ro)
    add_seed_arg(ro)
    ro.set_defaults(func=_rollouts)

    ev = sub.add_parser("eval", help="held-out calibration vs probe, verbal confidence, shuffled labels")
    add_model_args(ev)
    ev.add_argument("--train", "--head", dest="train", type=existing_dir, required=True,
                    help="the folder `introspect train` wrote (its head/ folder is accepted too)")
    add_out_arg(ev)
    ev.add_argument("--rollouts", type=existing_dir, default=None,
                    help="another rollout store (e.g. from `introspect rollouts --task words`): score all of it")
    ev.add_argument("--fractions", type=probability, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                    help="prefix fractions scored, each in [0, 1]")
    ev.add_argument("--no-verbal", action="store_true", help="skip asking the model for its confidence")
    ev.add_argument("--cv", type=_folds, default=0, help="also K-fold cross-validation by problem over all rollouts")
    ev.add_argument("--n-shuffles", type=positive_int, default=3, help="shuffled-label heads in the null baseline")
    add_seed_arg(ev)
    ev.set_defaults(func=_eval)

    co = sub.add_parser("compare", help="heads of several modes on the same held-out questions, paired")
    add_model_args(co)
    co.add_argument("--heads", type=existing_dir, nargs="+", required=True,
                    help="train folders (or their head/ folders) of one rollout store and split; the first is the reference")
    add_out_arg(co)
    co.add_argument("--n-boot", type=positive_int, default=1000)
    add_seed_arg(co)
    co.set_defaults(func=_compare)

    sa = sub.add_parser("sample", help="adaptive sampler vs majority voting / best-of-N (Pareto curve)")
    add_model_args(sa)
    sa.add_argument("--train", "--head", dest="train", type=existing_dir, required=True,
                    help="the folder `introspect train` wrote (its head/ folder is accepted too)")
    add_out_arg(sa)
    sa.add_argument("--rollouts", type=existing_dir, default=None)
    sa.add_argument("--alphas", type=nonneg_float, nargs="+", default=None, help="token costs to sweep (>= 0)")
    sa.add_argument("--beta", type=nonneg_float, default=0.0, help="latency cost per decode step")
    sa.add_argument("--every", type=positive_int, default=4, help="tokens between checkpoints")
    sa.add_argument("--live", type=nonneg_int, default=0, help="also generate live on this many held-out problems")
    sa.add_argument("--live-alphas", type=nonneg_float, nargs="+", default=[0.003, 0.01])
    sa.add_argument("--cv", type=_folds, default=0, help="also compare on every problem with K-fold heads")
    sa.add_argument("--utility", type=nonneg_int, default=0,
                    help="also run the utility sampler (stop/start/branch) live on this many held-out problems "
                         "(with --cv: of all problems, each read by its fold's head)")
    sa.add_argument("--utility-alphas", type=nonneg_float, nargs="+", default=[0.001, 0.01], help="its token costs")
    sa.add_argument("--utility-betas", type=nonneg_float, nargs="+", default=[0.0, 0.01],
                    help="its latency costs per step")
    sa.add_argument("--no-branch", action="store_true", help="utility sampler without branching")
    add_seed_arg(sa)
    sa.set_defaults(func=_sample)
