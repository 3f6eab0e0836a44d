"""`metalens demo`, `metalens posttrain` and `metalens atlas`: thin wrappers over analyses functions."""
from __future__ import annotations

from metalens.cli import add_model_args


def _posttrain(args) -> None:
    import metalens
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain

    layers = args.lora_layers if args.layers is None else 0 if args.layers == "all" else int(args.layers)
    cfg = PosttrainConfig(
        steps=args.steps, save_every=args.save_every, batch_size=args.batch_size, lr=args.lr,
        lora_rank=args.lora_rank, lora_layers=layers or None, n_eval=args.n_eval, seed=args.seed,
        heldout_seed=args.heldout_seed, levels=tuple(args.levels), merge_final=not args.no_merge,
        method=args.method, full=args.full, group_size=args.group_size, kl_coef=args.kl_coef,
        temperature=args.temperature, sample_tokens=args.sample_tokens,
    )
    model = metalens.load_model(args.model, device=args.device)
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
    from metalens.analyses.demo import run_demo

    run_demo(args.model, args.out, device=args.device, areas=args.area)
    print(f"open {args.out}/index.html")


def _heads(models: list[str], given: list[str]) -> dict[str, str]:
    """--head MODEL=DIR (or a bare DIR with one --model) -> {model: dir}."""
    heads = {}
    for value in given:
        model, sep, path = value.rpartition("=")
        if not sep:
            if len(models) != 1:
                raise ValueError(f"--head {value}: with several models write --head MODEL=DIR.")
            model = models[0]
        if model not in models:
            raise ValueError(f"--head names {model!r}, which is not one of the --model values {models}.")
        heads[model] = path
    return heads


def _atlas(args) -> None:
    from metalens.analyses.atlas import AtlasConfig, atlas_command, headline, run_atlas

    models = args.model or ["gemma-3-270m"]
    cfg = AtlasConfig(
        n_arithmetic=args.n_arithmetic, levels=tuple(args.levels), n_facts=args.n_facts, items=args.items,
        n_shots=args.n_shots, probe_at=args.probe_at, layers=tuple(args.layers) if args.layers else None, cv=args.cv,
        probe_c=args.probe_c, n_boot=args.n_boot, n_bins=args.n_bins, reporting=not args.no_reporting,
        reporting_draws=args.reporting_draws, reporting_n=tuple(args.reporting_n), heads=_heads(models, args.head),
        batch_size=args.batch_size, seed=args.seed,
    )
    result = run_atlas(models, cfg, out=args.out, device=args.device, command=atlas_command(models, cfg, args.out))
    for profile in result.models:
        print(f"{profile['model']}: {headline(profile)}")
    print(f"wrote {args.out}/atlas.json and atlas.html in {result.seconds:.0f}s")


def register(sub) -> None:
    """Add the analyses verbs to the `metalens` parser."""
    demo = sub.add_parser("demo", help="quick run of every area on one model; writes OUT/index.html")
    add_model_args(demo)
    demo.add_argument("--out", default="reports")
    demo.add_argument("--area", action="append", default=None, help="only these areas (repeatable)")
    demo.set_defaults(func=_demo)
    p = sub.add_parser("posttrain", help="short SFT or GRPO post-training on step-by-step arithmetic, resumable checkpoints")
    add_model_args(p)
    p.add_argument("--out", required=True, help="output directory for checkpoints, results.json, report.html")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--n-eval", type=int, default=24, help="held-out problems for accuracy before/after")
    p.add_argument("--lora-layers", type=int, default=6, help="adapt only the last N blocks (0: all)")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-seed", type=int, default=1000, help="seed of the held-out problems (saved in the metadata)")
    p.add_argument("--no-merge", action="store_true", help="skip saving the merged final model (~1 GB)")
    p.add_argument("--method", default="sft", choices=["sft", "grpo"],
                   help="sft: worked solutions; grpo: sampled solutions rewarded by the arithmetic grader")
    p.add_argument("--layers", default=None, help="blocks to train: 'all' or the last N (default: --lora-layers)")
    p.add_argument("--full", action="store_true", help="train the weights, not LoRA adapters (embedding frozen)")
    p.add_argument("--group-size", type=int, default=4, help="grpo: completions sampled per problem")
    p.add_argument("--kl-coef", type=float, default=0.04, help="grpo: weight of the k3 KL penalty to the base")
    p.add_argument("--temperature", type=float, default=1.0, help="grpo: sampling temperature")
    p.add_argument("--sample-tokens", type=int, default=24, help="grpo: new tokens per sampled completion")
    p.add_argument("--stop-after", type=int, default=None,
                   help="checkpoint at this step and stop; the same command without it resumes from --out")
    p.set_defaults(func=_posttrain)
    a = sub.add_parser("atlas", help="metacognitive atlas: behavioural and internal signals of correctness per model")
    a.add_argument("--model", action="append", default=None,
                   help="embedded name, local dir or hub id; repeat to put several models in one atlas")
    a.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    a.add_argument("--out", required=True, help="output directory: atlas.json, atlas.html, models/NAME/")
    a.add_argument("--n-arithmetic", type=int, default=40, help="two-choice arithmetic items")
    a.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4], help="arithmetic difficulty levels")
    a.add_argument("--n-facts", type=int, default=40, help="shipped two-choice facts (at most 40)")
    a.add_argument("--items", default=None, help="your JSONL of {question, choices, answer} (added to the above)")
    a.add_argument("--n-shots", type=int, default=2, help="worked examples for base models (chat models: none)")
    a.add_argument("--probe-at", default="keep", choices=["keep", "answer", "confidence", "bet"],
                   help="prompt whose last token the probe reads")
    a.add_argument("--layers", type=int, nargs="+", default=None, help="probe layers (default: every block)")
    a.add_argument("--cv", type=int, default=5, help="grouped folds for the probe")
    a.add_argument("--probe-c", type=float, default=0.1, help="probe's inverse L2 strength")
    a.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for every interval")
    a.add_argument("--n-bins", type=int, default=10, help="calibration bins")
    a.add_argument("--no-reporting", action="store_true", help="skip the probe axis's reportability")
    a.add_argument("--reporting-draws", type=int, default=8)
    a.add_argument("--reporting-n", type=int, nargs="+", default=[0, 2, 4, 8, 16])
    a.add_argument("--head", action="append", default=[], help="trained reward head: MODEL=DIR (or DIR with one model)")
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=_atlas)
