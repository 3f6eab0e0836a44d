"""`metalens steer` (rule -> vector -> sweep -> steered generation), `metalens steer-ab` (A/B behaviour
items -> CAA vector -> propensity per layer x strength) and `metalens mentor` (rule graph -> retrieved rule
vectors -> attack success): each writes results.json + report.html."""
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
    if args.gguf:
        path = result.book[result.rule.name].vector.to_gguf(args.gguf)
        print(f"wrote {path} (llama.cpp control vector, layer {result.layer}; use it as "
              f"--control-vector-scaled {path} {result.strength:g})")


def _steer_ab(args) -> None:
    import metalens
    from metalens.steering.ab_pipeline import SteerABConfig, run_steer_ab

    config = SteerABConfig(args.data, layers=args.layers, strengths=tuple(args.strengths), seed=args.seed,
                           unit=args.unit, max_items=args.max_items, control_data=args.control_data,
                           neutral=args.neutral, open_items=args.open_items, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size)
    model = metalens.load_model(args.model, device=args.device)
    result = run_steer_ab(model, config, out=args.out)
    print(result.summary())
    print(f"wrote {args.out}/results.json, {args.out}/report.html and {args.out}/vector/")
    if args.gguf:
        path = result.vector.restricted([result.layer]).to_gguf(args.gguf)
        unit = "the layer's mean residual norm" if args.unit == "residual" else "the CAA mean difference"
        print(f"wrote {path} (llama.cpp control vector, layer {result.layer}, strength 1 = {unit})")


def _mentor(args) -> None:
    import metalens
    from metalens.steering.mentor_run import MentorConfig, run_mentor

    config = MentorConfig(queries=args.queries, tree=args.tree, rounds=args.rounds, layer=args.layer,
                          top_k=args.top_k, strengths=tuple(args.strengths), retrieval=args.retrieval,
                          seed=args.seed, max_per_domain=args.max_per_domain, max_new_tokens=args.max_new_tokens,
                          reflect_tokens=args.reflect_tokens, assessor=args.assessor,
                          eval_assessor=not args.no_eval_assessor, batch_size=args.batch_size)
    model = metalens.load_model(args.model, device=args.device)
    result = run_mentor(model, config, out=args.out)
    print(result.summary())
    print(f"wrote {args.out}/results.json, {args.out}/report.html, {args.out}/graph/ and {args.out}/vectors/")


def _add_mentor(subparsers) -> None:
    from metalens.cli import add_model_args

    p = subparsers.add_parser("mentor", help="MENTOR: rule graph from self-assessment, retrieved rule vectors, "
                              "attack success on held-out risk queries")
    add_model_args(p)
    p.add_argument("--queries", default=None, help="JSONL of {query, domain, rubric, keywords} (default: shipped 60)")
    p.add_argument("--tree", default=None, help="static rule tree JSON (default: steering/data/mentor_tree.json)")
    p.add_argument("--rounds", type=int, default=2, help="self-evolution rounds after the static round 0")
    p.add_argument("--out", required=True, help="output directory (resumable: a rerun continues after the last round)")
    p.add_argument("--layer", type=int, default=None, help="steering layer (default: n_layers // 3)")
    p.add_argument("--top-k", type=int, default=2, help="rules retrieved per query")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                   help="strength grid; chosen on the validation queries")
    p.add_argument("--retrieval", default="activations", choices=["activations", "bow"])
    p.add_argument("--seed", type=int, default=0, help="seed of the build/validation/test split")
    p.add_argument("--max-per-domain", type=int, default=None, help="use a seeded sample of this many queries per domain")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--reflect-tokens", type=int, default=24, help="tokens per reflection (0: verdict only)")
    p.add_argument("--assessor", default="self", help="'self', 'none', 'checker' (the keyword checker "
                   "as an oracle assessor: its verdicts, the query's rubric as the rule), or a model to load")
    p.add_argument("--no-eval-assessor", action="store_true", help="do not judge test responses with the assessor")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=_mentor)


def register(subparsers) -> None:
    """Add the `steer`, `steer-ab` and `mentor` verbs."""
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
    p.add_argument("--gguf", default=None, help="also export the chosen vector (times its strength) as a llama.cpp "
                   "control-vector GGUF")
    p.set_defaults(func=_steer)

    ab = subparsers.add_parser("steer-ab", help="CAA vector from A/B behaviour items; propensity, steerability and "
                               "costs per layer x strength, no judge")
    add_model_args(ab)
    ab.add_argument("--data", required=True, help="model-written-evaluations JSONL (question, answer_matching_behavior, "
                    "answer_not_matching_behavior)")
    ab.add_argument("--out", required=True, help="output directory")
    ab.add_argument("--layers", type=int, nargs="+", default=None, help="candidate layers (default: 4 spread out)")
    ab.add_argument("--strengths", type=float, nargs="+", default=[-0.5, -0.2, -0.1, 0, 0.1, 0.2, 0.5],
                    help="strength grid, negatives allowed; 0 is always added")
    ab.add_argument("--unit", choices=("residual", "raw"), default="residual",
                    help="what strength 1 adds: a vector as long as the layer's mean residual norm (default) or the "
                    "raw CAA mean difference")
    ab.add_argument("--control-data", default=None, help="A/B items unrelated to the behaviour, for the accuracy "
                    "cost (default: shipped general-knowledge items)")
    ab.add_argument("--neutral", default=None, help="neutral text, one per line, for the loss cost (default: shipped)")
    ab.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test split")
    ab.add_argument("--max-items", type=int, default=None, help="use a seeded sample of this many items")
    ab.add_argument("--open-items", type=int, default=3, help="test questions answered open-ended, steered both ways")
    ab.add_argument("--max-new-tokens", type=int, default=40)
    ab.add_argument("--batch-size", type=int, default=8)
    ab.add_argument("--gguf", default=None, help="also export the chosen layer's vector as a llama.cpp control vector")
    ab.set_defaults(func=_steer_ab)
    _add_mentor(subparsers)
