"""`metalens steer`: rule -> steering vector -> sweep -> steered generation -> results.json + report.html."""
from __future__ import annotations


def _steer(args) -> None:
    import metalens
    from metalens.steering.pipeline import SteerConfig, run_steer

    config = SteerConfig(args.rule, prompts=metalens.read_texts(args.prompts) if args.prompts else None,
                         pairs=args.pairs, vector=args.vector, layers=args.layer,
                         strengths=tuple(args.strength or (0.5, 1.0, 2.0)), method=args.method, rounds=args.rounds,
                         judge=args.judge, max_new_tokens=args.max_new_tokens, n_select=args.n_select,
                         n_validate=args.n_validate)
    model = metalens.load_model(args.model, device=args.device)
    result = run_steer(model, config, out=args.out)
    print(result.summary())
    print(f"wrote {args.out}/results.json, {args.out}/report.html and {args.out}/rulebook/")


def register(subparsers) -> None:
    """Add the `steer` verb."""
    from metalens.cli import add_model_args

    p = subparsers.add_parser("steer", help="train a steering vector for a rule, sweep it, and report adherence")
    add_model_args(p)
    p.add_argument("--rule", required=True, help="a shipped rule name (ocean, space, food, cheerful, no_dosage) or plain text")
    p.add_argument("--prompts", default=None, help="file with one prompt per line (default: the shipped held-out prompts)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--pairs", default=None, help='JSONL of {"positive", "negative"} pairs (default: shipped or templates)')
    p.add_argument("--vector", default=None, help="load this saved SteeringVector instead of training")
    p.add_argument("--layer", type=int, action="append", help="candidate layer; repeat (default: 4 spread out)")
    p.add_argument("--strength", type=float, action="append", help="candidate strength; repeat (default 0.5, 1, 2)")
    p.add_argument("--method", default="mean_diff", choices=["mean_diff", "pca"])
    p.add_argument("--rounds", type=int, default=0, help="MENTOR self-assessment rounds")
    p.add_argument("--judge", default="checker", choices=["checker", "model"])
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--n-select", type=int, default=None, help="prompts that choose layer and strength (default: a third)")
    p.add_argument("--n-validate", type=int, default=None,
                   help="prompts MENTOR rounds decide on (default with --rounds: a third); the rest are the test set")
    p.set_defaults(func=_steer)
