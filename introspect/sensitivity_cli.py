"""`metalens sensitivity ziprc-sampler`: the replayed samplers' detection curve against oracle head quality
(`run_oracle_sampler_sensitivity`); the label-noise check, `sensitivity ziprc`, lives in `introspect.cli`."""
from __future__ import annotations

import math

from metalens.options import (add_model_args, add_seed_arg, check_out, existing_dir, int_range, load_model_from_args,
                              mark_out, nonneg_float, positive_int, probability)
from metalens.sensitivity_cli import add_sweep_args, print_sweep

KIND = "sensitivity-ziprc-sampler"


def _placement(trained: dict) -> str:
    """The trained head's line beside the curve."""
    reading, published = trained["reading"], trained["published_order"]
    best = published["best"] or {}
    within = reading["auroc_within"]
    within = "n/a" if within is None or not math.isfinite(within) else f"{within:.3f} (q {2 * within - 1:.2f})"
    return (f"trained head: final-reading AUROC {reading['auroc_final']:.3f} (q {reading['q_final']:.2f}), within "
            f"questions {within}; detected in the stored order: {published['detected']} (best row {best.get('method')} "
            f"alpha={best.get('alpha')}: {best.get('wins')} wins / {best.get('ties')} ties / {best.get('losses')} "
            f"losses, Holm sign p {best.get('p_sign_holm', float('nan')):.3f}); in {trained['detected_share']:.2f} "
            f"[{trained['low']:.2f}, {trained['high']:.2f}] of {trained['n_seeds']} re-orderings")


def _run(args) -> None:
    from metalens.introspect.sampler_sensitivity import OracleSamplerSensitivityConfig, run_oracle_sampler_sensitivity
    from metalens.introspect.workflows.train import TrainResult

    check_out(args.out, KIND)
    trained = TrainResult.load(args.train)  # its files checked before the model loads
    config = OracleSamplerSensitivityConfig(trained, cv=args.cv, alphas=args.alphas, beta=args.beta,
                                            every=args.every, seed=args.seed, sampler=args.sampler,
                                            length=args.length, strengths=tuple(args.strengths), seeds=args.seeds)
    model = load_model_from_args(args)
    trained.head.check_fits(model)
    mark_out(args.out, KIND)
    result = run_oracle_sampler_sensitivity(model, config, out=args.out)
    print_sweep(result, args.out, _placement(result.settings["trained_head"]))


def register_sampler_sensitivity(subparsers) -> None:
    """Add `ziprc-sampler` under `metalens sensitivity`."""
    from metalens.introspect.sampler_sensitivity import DEFAULT_QUALITIES, SAMPLERS
    from metalens.introspect.sampling.oracle import LENGTHS

    sp = subparsers.add_parser("ziprc-sampler", help="replay the prune-only / best-of-N sampler on a train run's "
                                                     "out-of-fold pools read by an oracle head of known quality, "
                                                     "and count how often it beats majority voting")
    add_model_args(sp)
    sp.add_argument("--train", "--head", dest="train", type=existing_dir, required=True,
                    help="the folder `introspect train` wrote (its store, head and cached states)")
    add_sweep_args(sp, strengths=DEFAULT_QUALITIES, strength_type=probability, seeds=20,
                   seeds_help="seeds per quality, each re-ordering the pools and drawing the misread samples",
                   strengths_help="oracle reading reliabilities q in [0, 1], AUROC 0.5 + q / 2 (0: reads nothing, "
                                  "the null; 1: the truth)")
    sp.add_argument("--cv", type=int_range(2), default=5, help="folds of the out-of-fold pools (published: 5)")
    sp.add_argument("--alphas", type=nonneg_float, nargs="+", default=None,
                    help="token costs replayed (default: pareto's sweep, as published)")
    sp.add_argument("--beta", type=nonneg_float, default=0.0, help="latency cost per decode step")
    sp.add_argument("--every", type=positive_int, default=4, help="tokens between checkpoints")
    sp.add_argument("--sampler", default="prune-only", choices=list(SAMPLERS),
                    help="whose rows the rule counts (the Holm family is all of the replay's comparisons)")
    sp.add_argument("--length", default="head", choices=list(LENGTHS),
                    help="the oracle's remaining-length reading: the trained head's, or the true tokens left")
    add_seed_arg(sp)
    sp.set_defaults(func=_run)
