"""`metalens demo`, `metalens posttrain`, `metalens atlas` and `metalens sensitivity atlas`: thin wrappers over
analyses functions.

Each checks its flags and files, then `--out` (`check_out`), before any model loads; the folder is
claimed (`mark_out`) only when the run starts writing.
"""
from __future__ import annotations

from pathlib import Path

from metalens.tasks.arithmetic import LEVELS

from metalens.options import (add_data_arg, add_layers_arg, add_model_args, add_out_arg, add_seed_arg, check_out,
                              existing_dir, float_range, int_range, load_model_from_args, mark_out, nonneg_int,
                              positive_float, positive_int)
from metalens.sensitivity_cli import add_sweep_args, print_sweep

LEVEL = int_range(min(LEVELS), max(LEVELS))  # arithmetic difficulty levels
LEVELS_HELP = f"arithmetic difficulty levels ({min(LEVELS)}-{max(LEVELS)})"
BATCH = int_range(1, 4096)


def train_blocks(text: str):
    """--train-blocks: 'all' (None) or how many of the last blocks train (>= 1)."""
    if text == "all":
        return None
    return positive_int(text)


train_blocks.__name__ = "'all' or a positive number of blocks"


def _posttrain(args) -> None:
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain

    check_out(args.out, "posttrain")
    cfg = PosttrainConfig(
        steps=args.steps, save_every=args.save_every, batch_size=args.batch_size, lr=args.lr,
        lora_rank=args.lora_rank, lora_layers=args.train_blocks, n_eval=args.n_eval, seed=args.seed,
        heldout_seed=args.heldout_seed, levels=tuple(args.levels), merge_final=not args.no_merge,
        method=args.method, full=args.full, group_size=args.group_size, kl_coef=args.kl_coef,
        temperature=args.temperature, sample_tokens=args.sample_tokens,
    )
    if args.stop_after is not None and args.stop_after > cfg.steps:
        raise ValueError(f"--stop-after {args.stop_after} is past --steps {cfg.steps}: give a step in [1, {cfg.steps}].")
    model = load_model_from_args(args)
    mark_out(args.out, "posttrain")
    result = run_posttrain(model, cfg, out=args.out, stop_after=args.stop_after)
    if not result.finished:
        print(f"stopped after step {result.curve[-1]['step']}; run the same command without --stop-after to resume")
        return
    before, after = result.accuracy_before, result.accuracy_after
    c = result.change
    print(f"accuracy {before['accuracy']:.3f} [{before['low']:.3f}, {before['high']:.3f}] -> {after['accuracy']:.3f} "
          f"[{after['low']:.3f}, {after['high']:.3f}] (paired change {c['mean_diff']:+.3f} [{c['low']:+.3f}, "
          f"{c['high']:+.3f}]) on {result.heldout['n']} held-out problems (seed {result.heldout['seed']}) "
          f"in {result.seconds:.0f}s; "
          f"wrote {result.out}/results.json, report.html, {len(result.checkpoints)} checkpoints")


def _demo(args) -> None:
    from metalens.analyses.demo import DemoConfig, run_demo

    check_out(args.out, "demo")
    cfg = DemoConfig(areas=tuple(args.area) if args.area else None)
    model = load_model_from_args(args)
    mark_out(args.out, "demo")
    run_demo(model, cfg, out=args.out)
    print(f"open {args.out}/index.html")


def _heads(models: list[str], given: list[str]) -> dict[str, str]:
    """--head MODEL=DIR (or a bare DIR with one --model) -> {model: dir}; each DIR must be a folder."""
    heads = {}
    for value in given:
        model, sep, path = value.rpartition("=")
        if not sep:
            if len(models) != 1:
                raise ValueError(f"--head {value}: with several models write --head MODEL=DIR.")
            model = models[0]
        if model not in models:
            raise ValueError(f"--head names {model!r}, which is not one of the --model values {models}.")
        if not Path(path).expanduser().is_dir():
            raise ValueError(f"--head {value}: {path} is not a folder; give a trained head's folder "
                             "(`metalens introspect train --out DIR`).")
        heads[model] = path
    return heads


def _atlas(args) -> None:
    from metalens.analyses.atlas import AtlasConfig, atlas_command, atlas_items, headline, run_atlas
    from metalens.analyses.overlap import training_overlap

    check_out(args.out, "atlas")
    models = args.model or ["gemma-3-270m"]
    if args.layers is not None and "all" in args.layers and len(args.layers) > 1:
        raise ValueError(f"--layers {' '.join(map(str, args.layers))}: give block numbers or 'all' alone, not both.")
    layers = None if args.layers is None or "all" in args.layers else tuple(args.layers)
    cfg = AtlasConfig(
        n_arithmetic=args.n_arithmetic, levels=tuple(args.levels), n_facts=args.n_facts,
        items=str(args.data) if args.data else None, n_shots=args.n_shots, probe_at=args.probe_at, layers=layers,
        cv=args.cv, probe_c=args.probe_c, n_boot=args.n_boot, n_bins=args.n_bins, reporting=not args.no_reporting,
        reporting_draws=args.reporting_draws, reporting_n=tuple(args.reporting_n), heads=_heads(models, args.head),
        batch_size=args.batch_size, seed=args.seed,
    )
    atlas_items(cfg, training_overlap(models)[0])  # items file and posttrain records checked before any model loads
    mark_out(args.out, "atlas")
    result = run_atlas(models, cfg, out=args.out, device=args.device, dtype=args.dtype,
                       command=atlas_command(models, cfg, args.out))
    for profile in result.models:
        print(f"{profile['model']}: {headline(profile)}")
    print("\n".join(result.multiplicity["summary"]))
    print(f"arithmetic items that were post-training problems: {result.training_overlap['n_excluded_overlap']} "
          f"redrawn, {result.training_overlap['n_overlap_left']} left")
    print(f"wrote {args.out}/atlas.json and atlas.html in {result.seconds:.0f}s")


def _add_posttrain(sub) -> None:
    p = sub.add_parser("posttrain", help="short SFT or GRPO post-training on step-by-step arithmetic, resumable checkpoints")
    add_model_args(p)
    add_out_arg(p, help="output folder for checkpoints, results.json, report.html (a rerun resumes it)")
    p.add_argument("--steps", type=int_range(1, 10**6), default=30)
    p.add_argument("--save-every", type=positive_int, default=5)
    p.add_argument("--batch-size", type=BATCH, default=4, help="problems per step")
    p.add_argument("--lr", type=float_range(0, 10, low_open=True), default=3e-3, help="learning rate in (0, 10]")
    p.add_argument("--lora-rank", type=int_range(1, 4096), default=8)
    p.add_argument("--n-eval", type=int_range(2, 100_000), default=24, help="held-out problems for accuracy before/after")
    p.add_argument("--train-blocks", type=train_blocks, default=6, metavar="N|all",
                   help="train the last N blocks, or all of them (default 6)")
    p.add_argument("--levels", type=LEVEL, nargs="+", default=[1, 2, 3], help=LEVELS_HELP)
    add_seed_arg(p)
    p.add_argument("--heldout-seed", type=nonneg_int, default=1000,
                   help="seed of the held-out problems (saved in the metadata)")
    p.add_argument("--no-merge", action="store_true", help="skip saving the merged final model (~1 GB)")
    p.add_argument("--method", default="sft", choices=["sft", "grpo"],
                   help="sft: worked solutions; grpo: sampled solutions rewarded by the arithmetic grader")
    p.add_argument("--full", action="store_true", help="train the weights, not LoRA adapters (embedding frozen)")
    p.add_argument("--group-size", type=int_range(2, 1024), default=4, help="grpo: completions sampled per problem")
    p.add_argument("--kl-coef", type=float_range(0, 100), default=0.04, help="grpo: weight of the k3 KL penalty")
    p.add_argument("--temperature", type=float_range(0, 100, low_open=True), default=1.0,
                   help="grpo: sampling temperature in (0, 100]")
    p.add_argument("--sample-tokens", type=int_range(1, 4096), default=24, help="grpo: new tokens per completion")
    p.add_argument("--stop-after", type=positive_int, default=None,
                   help="checkpoint at this step and stop; the same command without it resumes from --out")
    p.set_defaults(func=_posttrain)


def _add_atlas(sub) -> None:
    a = sub.add_parser("atlas", help="metacognitive atlas: behavioural and internal signals of correctness per model")
    add_model_args(a, several=True)
    add_out_arg(a, help="output folder: atlas.json, atlas.html, models/NAME/ (a rerun reuses finished models)")
    a.add_argument("--n-arithmetic", type=int_range(0, 100_000), default=40, help="two-choice arithmetic items")
    a.add_argument("--levels", type=LEVEL, nargs="+", default=[1, 2, 3, 4], help=LEVELS_HELP)
    a.add_argument("--n-facts", type=int_range(0, 40), default=40, help="shipped two-choice facts (at most 40)")
    add_data_arg(a, help="your JSONL of {question, choices, answer} items (added to the above)")
    a.add_argument("--n-shots", type=int_range(0, 4), default=2, help="worked examples for base models (chat: none)")
    a.add_argument("--probe-at", default="keep", choices=["keep", "answer", "confidence", "bet"],
                   help="prompt whose last token the probe reads")
    add_layers_arg(a, help="probe layers", default_note="every block")
    a.add_argument("--cv", type=int_range(2, 100), default=5, help="grouped folds for the probe")
    a.add_argument("--probe-c", type=positive_float, default=0.1, help="probe's inverse L2 strength")
    a.add_argument("--n-boot", type=int_range(1, 1_000_000), default=1000, help="bootstrap resamples per interval")
    a.add_argument("--n-bins", type=int_range(1, 1000), default=10, help="calibration bins")
    a.add_argument("--no-reporting", action="store_true", help="skip the probe axis's reportability")
    a.add_argument("--reporting-draws", type=int_range(1, 10_000), default=8)
    a.add_argument("--reporting-n", type=int_range(0, 10_000), nargs="+", default=[0, 2, 4, 8, 16])
    a.add_argument("--head", action="append", default=[], help="trained reward head: MODEL=DIR (or DIR with one model)")
    a.add_argument("--batch-size", type=BATCH, default=8)
    add_seed_arg(a)
    a.set_defaults(func=_atlas)


def register(sub) -> None:
    """Add the analyses verbs to the `metalens` parser."""
    from metalens.analyses.demo import AREAS

    demo = sub.add_parser("demo", help="quick run of every area on one model; writes OUT/index.html")
    add_model_args(demo)
    add_out_arg(demo, required=False, default="reports", help="output folder (default: reports)")
    demo.add_argument("--area", action="append", default=None, choices=AREAS, help="only these areas (repeatable)")
    demo.set_defaults(func=_demo)
    _add_posttrain(sub)
    _add_atlas(sub)



def _sensitivity_atlas(args) -> None:
    from dataclasses import replace

    from metalens.analyses.atlas import AtlasConfig, AtlasResult, atlas_items
    from metalens.analyses.atlas_sensitivity import AtlasSensitivityConfig, family_profiles, run_atlas_sensitivity

    out = check_out(args.out, "sensitivity-atlas")
    if args.layers is not None and "all" in args.layers and len(args.layers) > 1:
        raise ValueError(f"--layers {' '.join(map(str, args.layers))}: give block numbers or 'all' alone, not both.")
    sizes = {"n_arithmetic": args.n_arithmetic, "n_facts": args.n_facts, "n_shots": args.n_shots, "cv": args.cv,
             "n_boot": args.n_boot, "batch_size": args.batch_size, "probe_at": args.probe_at,
             "items": str(args.data) if args.data else None,
             "layers": None if args.layers is None or "all" in args.layers else tuple(args.layers)}
    base = AtlasConfig.quick(reporting=False) if args.quick else AtlasConfig(reporting=False)
    atlas = replace(base, **{k: v for k, v in sizes.items() if v is not None or k == "layers"})
    config = AtlasSensitivityConfig(atlas, signal=args.signal, driver=args.driver, strengths=tuple(args.strengths),
                                    seeds=args.seeds, family=str(args.family) if args.family else None)
    for seed in range(args.seeds):  # each seed's items (and the items file) before the model loads
        atlas_items(replace(atlas, seed=seed))
    if args.family:
        AtlasResult.load(args.family)
    model = load_model_from_args(args)
    model.resolve_layers(list(atlas.layers) if atlas.layers is not None else "all")
    if args.family:
        family_profiles(args.family, model.name)
    mark_out(out, "sensitivity-atlas")
    print_sweep(run_atlas_sensitivity(model, config, out=out), out)


def register_sensitivity(subparsers) -> None:
    """Add `atlas` under `metalens sensitivity`: the detection curve of a monitor planted in one stated signal."""
    from metalens.analyses.atlas_planted import DRIVERS, SIGNALS
    from metalens.analyses.atlas_sensitivity import DEFAULT_STRENGTHS

    p = subparsers.add_parser("atlas", help="plant a monitor of correctness in one stated signal at several strengths "
                              "and count how often run_atlas calls it (and the others) different from chance")
    add_model_args(p)
    add_sweep_args(p, strengths=DEFAULT_STRENGTHS, seeds_help="atlas seeds", out_holds="runs/ and unplanted/",
                   strengths_help="planted strengths in logits of confident-minus-unconfident option difference per "
                   "SD of the driver (0 = unplanted)")
    p.add_argument("--signal", choices=list(SIGNALS), default="confidence",
                   help="the follow-up whose options the monitor drives (default confidence)")
    p.add_argument("--driver", choices=list(DRIVERS), default="probe",
                   help="probe: the atlas's held-out correctness probe (default); correct: the true correctness")
    p.add_argument("--family", type=existing_dir, default=None, metavar="DIR",
                   help="a saved atlas (`metalens atlas --out DIR`) whose other models join the Holm family")
    p.add_argument("--quick", action="store_true", help="the atlas's quick sizes (24 items, 300 resamples)")
    p.add_argument("--n-arithmetic", type=int_range(0, 100_000), default=None, help="two-choice arithmetic items")
    p.add_argument("--n-facts", type=int_range(0, 40), default=None, help="shipped two-choice facts (at most 40)")
    add_data_arg(p, help="your JSONL of {question, choices, answer} items (added to the above)")
    p.add_argument("--n-shots", type=int_range(0, 4), default=None, help="worked examples for base models")
    p.add_argument("--probe-at", default=None, choices=["keep", "answer", "confidence", "bet"],
                   help="prompt whose last token the probe reads (default keep)")
    add_layers_arg(p, help="probe layers", default_note="every block")
    p.add_argument("--cv", type=int_range(2, 100), default=None, help="grouped folds for the probe (default 5)")
    p.add_argument("--n-boot", type=int_range(1, 1_000_000), default=None, help="bootstrap resamples per interval")
    p.add_argument("--batch-size", type=BATCH, default=None, help="default 8")
    p.set_defaults(func=_sensitivity_atlas)
