"""`metalens neurofeedback`, `metalens probe` and `metalens sensitivity neurofeedback`: thin wrappers over
run_neurofeedback, run_probe_sweep and run_reporting_sensitivity."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from metalens.options import (add_layers_arg, add_model_args, add_out_arg, add_seed_arg, check_out, existing_dir,
                              existing_file, int_list, int_range, load_model_from_args, mark_out, positive_int)
from metalens.sensitivity_cli import add_sweep_args, print_sweep

_PATH_HELP = ("a path: metalens JSONL (text,label), ETHICS commonsense CSV (label,input,is_short,edited; short rows), "
              "true/false CSV (statement,label) or model-written-evaluations JSONL (question, answer_[not_]matching_behavior)")


def _num(value, spec: str = ".3f") -> str:
    """A number for the summary line; an undefined one (NaN, stored as null) says so instead of printing nan."""
    if value is None or value != value:
        return "undefined"
    return format(value, spec)


def dataset_arg(text: str) -> str:
    """A `type=` for --data: a shipped set's name, or an existing file (not a folder)."""
    from metalens.probes.datasets import SHIPPED

    return text if text in SHIPPED else str(existing_file(text))


def sae_features_arg(text: str) -> str:
    """A `type=` for --sae-features: a spec `metalens.probes.features.parse_feature_spec` reads."""
    import argparse

    from metalens.probes.features import parse_feature_spec

    try:
        parse_feature_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def neurofeedback_config(args):
    """The `NeurofeedbackConfig` the flags describe (--quick and --protocol pick the base sizes)."""
    from metalens.probes.neurofeedback import NeurofeedbackConfig

    overrides = {k: v for k, v in {"dataset": args.dataset, "draws": args.draws, "seed": args.seed,
                                   "max_sentences": args.max_sentences, "implicit_trials": args.implicit_trials,
                                   "explicit_trials": args.explicit_trials, "control_examples": args.control_examples,
                                   "pcs": args.pcs, "n_values": args.n_values, "sae": args.sae,
                                   "sae_features": args.sae_features}.items() if v is not None}
    if args.sae_features is not None and args.sae is None:
        raise ValueError(f"--sae-features {args.sae_features} needs --sae DIR: the SAE folder whose features they are.")
    if getattr(args, "no_cards", False) or getattr(args, "card_texts", None) is not None:  # `neurofeedback` only
        if args.sae is None:
            raise ValueError("--no-cards and --card-texts concern the SAE feature axes' cards: add --sae DIR or drop them.")
        overrides["cards"] = not args.no_cards
        if args.card_texts is not None:
            overrides["card_texts"] = args.card_texts
    for key in ("implicit_targets", "explicit_targets"):
        if getattr(args, key) is not None:
            overrides[key] = tuple(t.strip() for t in getattr(args, key).split(",") if t.strip())
    for key in ("pcs", "n_values"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    if args.layers is not None:
        if "all" in args.layers:
            raise ValueError("--layers: neurofeedback reads named blocks (e.g. --layers 9, or --layers 9 6 12 "
                             "with --protocol paper), not 'all'.")
        if len(args.layers) > 1 and args.protocol != "paper":
            raise ValueError(f"--layers {' '.join(map(str, args.layers))}: the strict protocol reads one block; "
                             "give one, or add --protocol paper to average reporting over several.")
        overrides["layer"] = args.layers[0]
        if len(args.layers) > 1:
            overrides["layers"] = tuple(args.layers)
    if args.protocol == "paper":
        # --quick keeps its small sizes under the paper's design; otherwise the paper's sizes (NeurofeedbackConfig.paper)
        overrides["protocol"] = "paper"
    if args.quick:
        return NeurofeedbackConfig.quick(**overrides)
    if args.protocol == "paper":
        return NeurofeedbackConfig.paper(**overrides)
    return NeurofeedbackConfig(**overrides)


def _neurofeedback(args) -> None:
    from metalens.probes.neurofeedback import prepare_data, run_neurofeedback

    check_out(args.out, "neurofeedback")
    cfg = neurofeedback_config(args)
    prepare_data(cfg)  # the data file, the split and the PCs it allows: refused before the model loads
    model = load_model_from_args(args)
    result = run_neurofeedback(model, cfg)
    mark_out(args.out, "neurofeedback")
    result.save(args.out)
    s = result.summary
    for row in s["rows"]:
        print(f"{row['axis']:>6}  var={_num(row['explained_variance'])}  report_acc={_num(row['report_accuracy'])} "
              f"[{_num(row['report_acc_low'], '.2f')}, {_num(row['report_acc_high'], '.2f')}] "
              f"(shuffled {_num(row['shuffled_accuracy'])}, words only {_num(row.get('surface_accuracy'))}, "
              f"paired diff {_num(row['report_diff'], '+.3f')} "
              f"[{_num(row['report_diff_low'], '+.2f')}, {_num(row['report_diff_high'], '+.2f')}], "
              f"p_holm={_num(row['report_p_holm'], '.3g')}; other axes' labels {_num(row.get('others_accuracy'))}, "
              f"p_holm={_num(row.get('report_p_vs_others_holm'), '.3g')})  implicit d_z={_num(row['implicit_dz_target'], '.2f')} "
              f"(unpaired d {_num(row['implicit_d_target'], '.3f')})"
              + (f" controllable: {row['implicit_controllable']}" if row["implicit_dz_target"] is not None else ""))
    print(f"control: {s['control_verdict']}" if s.get("control_verdict") else
          f"implicitly controllable (2x2 flip design): {s['n_implicit_controllable']}, specific {s['n_implicit_specific']}")
    print(f"protocol {s['protocol']}; above 0.5 (the paper's criterion): {s['n_above_half']}/{s['n_axes']}; "
          f"reportable axes: {s['n_reportable']}/{s['n_axes']} (Holm across {s['n_comparisons']['reporting']} axes); "
          f"wrote {Path(args.out) / 'results.json'}, report.html{', cards.json' if result.cards else ''} "
          f"({result.data['metadata']['seconds']} s)")


def _probe(args) -> None:
    from metalens.probes.datasets import load_dataset
    from metalens.probes.sweep import ProbeSweepConfig, run_probe_sweep

    check_out(args.out, "probe")
    load_dataset(args.dataset)  # a bad data file is refused before the model loads
    cfg = ProbeSweepConfig(dataset=args.dataset, layers=None if args.layers is None else tuple(args.layers),
                           positions=args.positions, seed=args.seed)
    model = load_model_from_args(args)
    sweep = run_probe_sweep(model, cfg)
    mark_out(args.out, "probe")
    sweep.save(args.out)
    for row in sweep.rows():
        print(f"layer {row['layer']:>3}  cv={row['cv_accuracy']:.3f}±{row['cv_std']:.3f}  held-out={row['test_accuracy']:.3f}")
    print(f"best layer {sweep.best_layer}; wrote {Path(args.out) / 'results.json'}, report.html and the probes")


def _sensitivity(args) -> None:
    from metalens.probes.neurofeedback import prepare_data
    from metalens.probes.sensitivity import (DEFAULT_CONTROL_STRENGTHS, DEFAULT_STRENGTHS, ControlSensitivityConfig,
                                             ReportingSensitivityConfig, run_control_sensitivity,
                                             run_reporting_sensitivity)

    control = args.stage == "control"
    kind = "sensitivity-neurofeedback" + ("-control" if control else "")
    check_out(args.out, kind)
    if control and args.protocol != "paper":
        raise ValueError("--stage control: only the 2x2 flip design calls an axis controllable; add --protocol paper.")
    if args.kind is not None and not control:
        raise ValueError("--kind picks the control stage a planted controller is judged by: use it with --stage control.")
    strengths = tuple(args.strengths) if args.strengths is not None else (
        DEFAULT_CONTROL_STRENGTHS if control else DEFAULT_STRENGTHS)
    stage_kind = args.kind or "implicit"
    if not control:
        # Control stages do not touch reporting; by default they run at their smallest, on the planted axis only.
        defaults = (("implicit_targets", args.axis), ("explicit_targets", ""), ("implicit_trials", 2),
                    ("control_examples", 2))
    elif stage_kind == "implicit":  # reporting and explicit control do not touch implicit control: at their smallest
        defaults = (("explicit_targets", ""), ("draws", 2))
    else:
        defaults = (("implicit_targets", args.axis), ("implicit_trials", 2), ("explicit_trials", 4), ("draws", 2))
    for key, value in defaults:
        if getattr(args, key) is None:
            setattr(args, key, value)
    nf = neurofeedback_config(args)
    if control and stage_kind == "implicit" and args.implicit_targets is None:
        nf = replace(nf, implicit_targets=None)  # every axis: the others are where false positives show
    if control and stage_kind == "explicit" and args.explicit_targets is None:
        _, _, _, pcs = prepare_data(nf)
        nf = replace(nf, explicit_targets=tuple(f"PC{k}" for k in pcs) + (("LR",) if nf.logistic_axis else ()))
    if control:
        config = ControlSensitivityConfig(nf, axis=args.axis, strengths=strengths, seeds=args.seeds, kind=stage_kind)
    else:
        config = ReportingSensitivityConfig(nf, axis=args.axis, strengths=strengths, seeds=args.seeds)
    for seed in range(args.seeds):  # the data, split, PCs and planted axis of every seed, before the model loads
        prepare_data(replace(nf, seed=seed, planted_axis=args.axis))
    model = load_model_from_args(args)
    mark_out(args.out, kind)
    run = run_control_sensitivity if control else run_reporting_sensitivity
    print_sweep(run(model, config, out=args.out), args.out)


def _add_neurofeedback_flags(nf) -> None:
    """The flags `neurofeedback` and `sensitivity neurofeedback` share (all but --out and --seed)."""
    add_model_args(nf)
    add_layers_arg(nf, allow_all=False, default_note="the model's default_layers(), the middle block",
                   help="the block whose residual stream defines the axes and is controlled; with --protocol paper, "
                        "reporting is averaged over every block given")
    nf.add_argument("--data", "--dataset", dest="dataset", type=dataset_arg, default=None,
                    help=f"moral (default), facts, or {_PATH_HELP}")
    nf.add_argument("--quick", action="store_true", help="small settings that finish in under 2 minutes on CPU")
    nf.add_argument("--draws", type=int_range(2), default=None,
                    help="random example draws per point (>= 2: intervals and tests need two)")
    nf.add_argument("--pcs", type=int_list(1), default=None,
                    help="comma-separated principal components (1-based), e.g. 1,2,4,8,32,128; at most the fit "
                         "split's size minus one")
    nf.add_argument("--n-values", type=int_list(0), default=None,
                    help="comma-separated N in-context examples, e.g. 0,2,4,8,16,32,64")
    nf.add_argument("--max-sentences", type=int_range(4), default=None, help="balanced subsample size of the dataset")
    nf.add_argument("--implicit-trials", type=int_range(2), default=None,
                    help="implicit-control trials per target axis (>= 2: d_z needs two paired trials)")
    nf.add_argument("--explicit-trials", type=positive_int, default=None, help="explicit-control trials per target axis")
    nf.add_argument("--control-examples", type=positive_int, default=None, help="N examples in control prompts")
    nf.add_argument("--implicit-targets", default=None,
                    help="comma-separated axes, e.g. LR,PC1 or F17 for an SAE feature (default: all)")
    nf.add_argument("--explicit-targets", default=None, help="comma-separated axes (default: LR,PC1; empty: none)")
    nf.add_argument("--sae", type=existing_dir, default=None,
                    help="an SAE folder (SAELens or Gemma Scope layout) trained on the residual stream leaving the "
                         "--layers block: its features join the axes as F<index> (strict protocol)")
    nf.add_argument("--sae-features", type=sae_features_arg, default=None,
                    help="which SAE features become axes, chosen on the fit split only (default active:8,variable:8): "
                         "a comma-separated list of feature indices or RULE:K, RULE active (highest mean activation) "
                         "or variable (highest variance), e.g. active:16 or active:8,variable:8,517")
    nf.add_argument("--protocol", choices=["strict", "paper"], default="strict",
                    help="strict (default): metalens' design; paper: Ji-An et al.'s framing, label rule and 2x2 control, "
                         "at the paper's sizes unless --quick or other flags say otherwise")


def register_sensitivity(subparsers) -> None:
    """Add `neurofeedback` under `metalens sensitivity`: the detection curve of a planted reporter
    (`--stage report`) or controller (`--stage control`)."""
    sn = subparsers.add_parser("neurofeedback", help="plant a reporter (or, --stage control, a controller) of one axis "
                                                     "at several strengths and count how often run_neurofeedback calls "
                                                     "it (and others) reportable (controllable)")
    _add_neurofeedback_flags(sn)
    add_sweep_args(sn, strengths=None, strengths_help="planted strengths (0 = unplanted); report: logits of label "
                   "difference per SD of the axis projection (default 0 0.25 0.5 1 2); control: SDs of the axis "
                   "projection added to each measured token, + toward the side the 2x2 design asks for (default 0 "
                   "0.001 0.01 0.1 1)")
    sn.add_argument("--stage", choices=["report", "control"], default="report",
                    help="report (default): plant a reporter in the reporting stage; control: plant a controller in "
                         "the 2x2 control stage (needs --protocol paper)")
    sn.add_argument("--kind", choices=["implicit", "explicit"], default=None,
                    help="with --stage control: the control stage that judges it (default implicit; its targets "
                         "default to every axis, the other stage runs at its smallest)")
    sn.add_argument("--axis", default="PC1", help="the axis the planted reporter reports / controller controls "
                                                  "(PC1, PC8, LR, ...)")
    sn.set_defaults(func=_sensitivity, seed=None)


def register(subparsers) -> None:
    """Add the `neurofeedback` and `probe` verbs."""
    nf = subparsers.add_parser("neurofeedback", help="metacognitive reporting and control of activation axes")
    _add_neurofeedback_flags(nf)
    add_out_arg(nf, help="output directory for results.json, report.html, axes/ and (with --sae) cards.json")
    nf.add_argument("--card-texts", type=int_range(1, 1_000_000), default=None,
                    help="with --sae: fit-split sentences each feature axis' card reads, the first ones (default 200)")
    nf.add_argument("--no-cards", action="store_true", help="with --sae: skip the feature cards")
    add_seed_arg(nf)
    nf.set_defaults(func=_neurofeedback)
    pr = subparsers.add_parser("probe", help="train a linear probe at every layer on a labelled JSONL set")
    add_model_args(pr)
    pr.add_argument("--data", "--dataset", dest="dataset", type=dataset_arg, default="moral",
                    help=f"moral (default), facts, or {_PATH_HELP}")
    add_layers_arg(pr, default_note="every block", help="blocks to probe")
    pr.add_argument("--positions", default="mean", choices=["last", "mean"])
    add_seed_arg(pr)
    add_out_arg(pr, help="output directory for results.json, report.html and the probes")
    pr.set_defaults(func=_probe)
