"""`metalens neurofeedback` and `metalens probe`: thin wrappers over run_neurofeedback and run_probe_sweep."""
from __future__ import annotations

from pathlib import Path


_PATH_HELP = ("a path: metalens JSONL (text,label), ETHICS commonsense CSV (label,input,is_short,edited; short rows), "
              "true/false CSV (statement,label) or model-written-evaluations JSONL (question, answer_[not_]matching_behavior)")


def _num(value, spec: str = ".3f") -> str:
    return "nan" if value is None else format(value, spec)  # results.json stores NaN as null


def _neurofeedback(args) -> None:
    import metalens
    from metalens.probes.neurofeedback import NeurofeedbackConfig, run_neurofeedback

    overrides = {k: v for k, v in {"layer": args.layer, "dataset": args.dataset, "draws": args.draws, "seed": args.seed,
                                   "max_sentences": args.max_sentences, "implicit_trials": args.implicit_trials,
                                   "explicit_trials": args.explicit_trials, "control_examples": args.control_examples,
                                   }.items() if v is not None}
    for key in ("implicit_targets", "explicit_targets"):
        if getattr(args, key) is not None:
            overrides[key] = tuple(t for t in getattr(args, key).split(",") if t)
    if args.pcs:
        overrides["pcs"] = tuple(int(x) for x in args.pcs.split(","))
    if args.n_values:
        overrides["n_values"] = tuple(int(x) for x in args.n_values.split(","))
    if args.layers:
        overrides["layers"] = tuple(int(x) for x in args.layers.split(","))
    if args.protocol == "paper":
        # --quick keeps its small sizes under the paper's design; otherwise the paper's sizes (NeurofeedbackConfig.paper)
        overrides["protocol"] = "paper"
    if args.quick:
        cfg = NeurofeedbackConfig.quick(**overrides)
    elif args.protocol == "paper":
        cfg = NeurofeedbackConfig.paper(**overrides)
    else:
        cfg = NeurofeedbackConfig(**overrides)
    model = metalens.load_model(args.model, device=args.device)
    result = run_neurofeedback(model, cfg, out=args.out)
    s = result.summary
    for row in s["rows"]:
        print(f"{row['axis']:>6}  var={_num(row['explained_variance'])}  report_acc={_num(row['report_accuracy'])} "
              f"[{_num(row['report_acc_low'], '.2f')}, {_num(row['report_acc_high'], '.2f')}] "
              f"(shuffled {_num(row['shuffled_accuracy'])}, words only {_num(row.get('surface_accuracy'))}, "
              f"paired diff {_num(row['report_diff'], '+.3f')} "
              f"[{_num(row['report_diff_low'], '+.2f')}, {_num(row['report_diff_high'], '+.2f')}], "
              f"p_holm={_num(row['report_p_holm'], '.3g')})  implicit d_z={_num(row['implicit_dz_target'], '.2f')} "
              f"(unpaired d {_num(row['implicit_d_target'], '.3f')})")
    print(f"protocol {s['protocol']}; above 0.5 (the paper's criterion): {s['n_above_half']}/{s['n_axes']}; "
          f"reportable axes: {s['n_reportable']}/{s['n_axes']} (Holm across {s['n_comparisons']['reporting']} axes); "
          f"wrote {Path(args.out) / 'results.json'} and report.html ({result.data['metadata']['seconds']} s)")


def _probe(args) -> None:
    import metalens
    from metalens.probes.sweep import ProbeSweepConfig, run_probe_sweep

    layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else None
    cfg = ProbeSweepConfig(dataset=args.dataset, layers=layers, positions=args.positions)
    model = metalens.load_model(args.model, device=args.device)
    sweep = run_probe_sweep(model, cfg, out=args.out)
    for row in sweep.rows():
        print(f"layer {row['layer']:>3}  cv={row['cv_accuracy']:.3f}±{row['cv_std']:.3f}  held-out={row['test_accuracy']:.3f}")
    print(f"best layer {sweep.best_layer}; wrote {Path(args.out) / 'results.json'}, report.html and the probes")


def register(subparsers) -> None:
    """Add the `neurofeedback` and `probe` verbs."""
    from metalens.cli import add_model_args

    nf = subparsers.add_parser("neurofeedback", help="metacognitive reporting and control of activation axes")
    add_model_args(nf)
    nf.add_argument("--layer", type=int, default=None, help="block whose residual stream defines the axes (default: middle)")
    nf.add_argument("--out", required=True, help="output directory for results.json and report.html")
    nf.add_argument("--dataset", "--data", dest="dataset", default=None, help=f"moral (default), facts, or {_PATH_HELP}")
    nf.add_argument("--quick", action="store_true", help="small settings that finish in under 2 minutes on CPU")
    nf.add_argument("--draws", type=int, default=None, help="random example draws per point")
    nf.add_argument("--pcs", default=None, help="comma-separated principal components, e.g. 1,2,4,8,32,128")
    nf.add_argument("--n-values", default=None, help="comma-separated N in-context examples, e.g. 0,2,4,8,16,32,64")
    nf.add_argument("--max-sentences", type=int, default=None, help="balanced subsample size of the dataset")
    nf.add_argument("--implicit-trials", type=int, default=None, help="implicit-control trials per target axis")
    nf.add_argument("--explicit-trials", type=int, default=None, help="explicit-control trials per target axis")
    nf.add_argument("--control-examples", type=int, default=None, help="N examples in control prompts")
    nf.add_argument("--implicit-targets", default=None, help="comma-separated axes, e.g. LR,PC1 (default: all)")
    nf.add_argument("--explicit-targets", default=None, help="comma-separated axes (default: LR,PC1; empty: none)")
    nf.add_argument("--seed", type=int, default=None)
    nf.add_argument("--protocol", choices=["strict", "paper"], default="strict",
                    help="strict (default): metalens' design; paper: Ji-An et al.'s framing, label rule and 2x2 control, "
                         "at the paper's sizes unless --quick or other flags say otherwise")
    nf.add_argument("--layers", default=None, help="paper protocol: comma-separated layers to average reporting over")
    nf.set_defaults(func=_neurofeedback)
    pr = subparsers.add_parser("probe", help="train a linear probe at every layer on a labelled JSONL set")
    add_model_args(pr)
    pr.add_argument("--dataset", "--data", dest="dataset", default="moral", help=f"moral (default), facts, or {_PATH_HELP}")
    pr.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    pr.add_argument("--positions", default="mean", choices=["last", "mean"])
    pr.add_argument("--out", required=True, help="output directory for results.json, report.html and the probes")
    pr.set_defaults(func=_probe)
