"""`metalens sae train` and `metalens sae eval`: flags, checks before the model loads, one workflow call."""
from __future__ import annotations

from metalens.capture import RESIDUAL_WIDTH
from metalens.options import (add_data_arg, add_model_args, add_out_arg, add_seed_arg, check_out, existing_dir,
                              float_range, int_range, load_model_from_args, mark_out, nonneg_float, positive_int)
from metalens.sae.corpus import DEFAULT_SOURCE
from metalens.sae.dictionary import ARCHITECTURES
from metalens.sae.train import SAETrainConfig
from metalens.sae.workflow import SAERunConfig, held_out_texts, run_sae_evaluation, run_sae_training

DATA_HELP = ("texts: .txt (one per line), .jsonl (a text/input/prompt/question field) or .csv (such a column); "
             f"default: {DEFAULT_SOURCE}")


def _add_text_args(parser) -> None:
    add_data_arg(parser, help=DATA_HELP)
    parser.add_argument("--eval-share", type=float_range(0, 0.9, low_open=True), default=0.1,
                        help="share of the texts held out for scoring (default 0.1)")
    parser.add_argument("--eval-texts", type=int_range(1, 1_000_000), default=200,
                        help="score at most this many held-out texts (default 200)")
    parser.add_argument("--max-length", type=int_range(2, 1_000_000), default=128,
                        help="truncate texts to this many tokens (default 128)")
    parser.add_argument("--batch-size", type=int_range(1, 65536), default=8,
                        help="texts per forward pass when scoring (default 8)")


def _run_config(args, train: SAETrainConfig) -> SAERunConfig:
    return SAERunConfig(train=train, data=str(args.data) if args.data else None, tokens=getattr(args, "tokens", 1),
                        eval_share=args.eval_share, max_eval_texts=args.eval_texts, eval_batch_size=args.batch_size)


def _train(args) -> None:
    import metalens

    check_out(args.out, "sae-train")
    train = SAETrainConfig(site=args.site, width=args.width, architecture=args.arch, k=args.k, lr=args.lr,
                           l1_coefficient=args.l1_coefficient, l0_coefficient=args.l0_coefficient,
                           batch_size=args.train_batch_size, steps=args.steps, seed=args.seed,
                           max_length=args.max_length, checkpoint_every=args.checkpoint_every,
                           init_b_dec=args.init_b_dec)
    if args.arch == "topk" and args.k > args.width:
        raise ValueError(f"--k {args.k} exceeds --width {args.width}: a TopK dictionary keeps k of its width features.")
    config = _run_config(args, train)
    config.check()
    held_out_texts(config)  # a bad --data is refused before the model loads
    model = load_model_from_args(args)
    metalens.resolve_site(model, args.site)
    mark_out(args.out, "sae-train")
    result = run_sae_training(model, config, out=args.out)
    e = result.eval
    print(f"variance explained {e.variance_explained:.3f}, L0 {e.l0:.1f}, dead {e.dead_share:.1%}, CE recovered "
          f"{e.ce_recovered_zero:.3f} (zero ablation) / {e.ce_recovered_mean:.3f} (mean ablation); wrote {args.out}")


def _eval(args) -> None:
    import metalens
    from metalens.sae.formats import load_sae

    check_out(args.out, "sae-eval")
    sae = load_sae(args.sae)
    config = _run_config(args, SAETrainConfig(site=sae.site or "", seed=args.seed, max_length=args.max_length))
    config.check()
    held_out_texts(config)
    model = load_model_from_args(args)
    for site in {sae.site, sae.out_site} - {None}:
        metalens.resolve_site(model, site)
    if sae.d_in != model.d_model and sae.site.endswith(RESIDUAL_WIDTH):
        raise ValueError(f"--sae {args.sae} reads width {sae.d_in} at {sae.site}, but {model.name}'s residual is "
                         f"{model.d_model} wide: it belongs to another model.")
    mark_out(args.out, "sae-eval")
    result = run_sae_evaluation(model, sae, config, out=args.out)
    e = result.eval
    print(f"variance explained {e.variance_explained:.3f}, L0 {e.l0:.1f}, CE recovered {e.ce_recovered_zero:.3f} "
          f"(zero) / {e.ce_recovered_mean:.3f} (mean); wrote {args.out}")


def add_sae_verbs(sub) -> None:
    """`metalens sae train|eval` under the top parser's subcommands."""
    sae = sub.add_parser("sae", help="train and score sparse autoencoders (SAELens / Gemma Scope formats)")
    verbs = sae.add_subparsers(dest="sae_verb", required=True)
    train = verbs.add_parser("train", help="train a small SAE on a site's activations, then score it on held-out text")
    add_model_args(train)
    train.add_argument("--site", required=True, help="hook name, e.g. blocks.6.hook_resid_post")
    _add_text_args(train)
    train.add_argument("--tokens", type=int_range(1, 100_000_000), default=50_000,
                       help="training tokens taken from the training texts (default 50000)")
    train.add_argument("--width", type=int_range(1, 1 << 20), default=1024, help="dictionary size d_sae (default 1024)")
    train.add_argument("--arch", choices=list(ARCHITECTURES), default="topk", help="architecture (default topk)")
    train.add_argument("--k", type=positive_int, default=32, help="TopK: active features per token (default 32)")
    train.add_argument("--l1-coefficient", type=nonneg_float, default=1.0, help="standard: L1 weight (default 1)")
    train.add_argument("--l0-coefficient", type=nonneg_float, default=1.0, help="jumprelu: L0 weight (default 1)")
    train.add_argument("--lr", type=float_range(0, 1, low_open=True), default=4e-4, help="Adam's step size")
    train.add_argument("--steps", type=int_range(1, 10_000_000), default=1000, help="optimiser steps (default 1000)")
    train.add_argument("--train-batch-size", type=int_range(1, 1 << 20), default=1024,
                       help="tokens per optimiser step (default 1024)")
    train.add_argument("--init-b-dec", choices=["zeros", "mean"], default="zeros",
                       help="decoder bias at the start: zeros, or the activations' mean (fewer dead TopK features)")
    train.add_argument("--checkpoint-every", type=positive_int, default=100, help="steps between checkpoints")
    add_seed_arg(train)
    add_out_arg(train, help="output folder: checkpoint, sae/ (SAELens layout), results.json; rerun to resume")
    train.set_defaults(func=_train)
    ev = verbs.add_parser("eval", help="score an SAE (SAELens / Gemma Scope folder) on held-out text")
    add_model_args(ev)
    ev.add_argument("--sae", type=existing_dir, required=True, help="the dictionary's folder")
    _add_text_args(ev)
    add_seed_arg(ev)
    add_out_arg(ev, help="output folder for results.json")
    ev.set_defaults(func=_eval)
