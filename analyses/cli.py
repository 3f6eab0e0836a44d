"""`metalens demo` and `metalens posttrain`: thin wrappers over analyses functions."""
from __future__ import annotations

from metalens.cli import add_model_args


def _posttrain(args) -> None:
    import metalens
    from metalens.analyses.posttrain import PosttrainConfig, run_posttrain

    cfg = PosttrainConfig(
        steps=args.steps, save_every=args.save_every, batch_size=args.batch_size, lr=args.lr,
        lora_rank=args.lora_rank, lora_layers=args.lora_layers or None, n_eval=args.n_eval, seed=args.seed,
        heldout_seed=args.heldout_seed, levels=tuple(args.levels), merge_final=not args.no_merge,
    )
    model = metalens.load_model(args.model, device=args.device)
    result = run_posttrain(model, cfg, out=args.out)
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


def register(sub) -> None:
    """Add the analyses verbs to the `metalens` parser."""
    demo = sub.add_parser("demo", help="quick run of every area on one model; writes OUT/index.html")
    add_model_args(demo)
    demo.add_argument("--out", default="reports")
    demo.add_argument("--area", action="append", default=None, help="only these areas (repeatable)")
    demo.set_defaults(func=_demo)
    p = sub.add_parser("posttrain", help="short LoRA fine-tune on step-by-step arithmetic, with checkpoints")
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
    p.set_defaults(func=_posttrain)
