"""`metalens introspect train|eval|sample`: parse arguments, call run_train / run_eval / run_sample, print."""
from __future__ import annotations


def _model(args):
    import metalens

    return metalens.load_model(args.model, device=args.device)


def _gap(name: str, gap: dict) -> str:
    return f"{name} {gap['gap']:+.3f} [{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]"


def _train(args) -> None:
    from metalens.introspect.rollouts import read_questions
    from metalens.introspect.train_run import TrainConfig, run_train

    if args.task not in ("arithmetic", "jsonl"):
        raise ValueError(f"Unknown --task '{args.task}': use 'arithmetic' or 'jsonl' (with --tasks FILE).")
    if args.task == "jsonl" and not args.tasks:
        raise ValueError("--task jsonl needs --tasks FILE with one {\"prompt\", \"answer\"} object per line.")
    config = TrainConfig(questions=read_questions(args.tasks) if args.task == "jsonl" else None,
                         rollouts=args.rollouts, n_questions=args.n_tasks, levels=tuple(args.levels),
                         n_samples=args.n_samples, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         mode=args.mode, steps=args.steps, lora_steps=args.lora_steps,
                         test_fraction=args.test_fraction, seed=args.seed)
    res = run_train(_model(args), config, out=args.out)
    for level, rate in res.solve_rates.items():
        print(f"level {level}: solve rate {rate:.3f}")
    print(f"held-out reward AUROC (all positions): head {res.heldout_auroc:.3f}, "
          f"shuffled labels {res.shuffled_auroc:.3f} ({len(res.test_tasks)} held-out questions)")
    if res.kl_normal_vocab_heldout is not None:
        print(f"held-out KL(frozen || adapted) over the normal vocabulary: {res.kl_normal_vocab_heldout:.4f} nats/token")
    print(f"wrote {args.out}/results.json, {args.out}/report.html and {args.out}/head")


def _eval(args) -> None:
    from metalens.introspect.eval_run import EvalConfig, run_eval

    config = EvalConfig(args.head, rollouts=args.rollouts, fractions=tuple(args.fractions),
                        verbal=not args.no_verbal, cv=args.cv, n_shuffles=args.n_shuffles, seed=args.seed)
    res = run_eval(_model(args), config, out=args.out)
    blocks = [("held-out", res.fractions, res.all_positions)]
    if res.cv:
        blocks.append((f"{args.cv}-fold CV", res.cv["fractions"], res.cv["all_positions"]))
    for name, fractions, everywhere in blocks:
        for f in fractions + [{"fraction": "all", **everywhere}]:
            aurocs = ", ".join(f"{k} AUROC {f[k]['auroc']:.3f}" for k in ("head", "probe", "shuffled", "verbal") if k in f)
            print(f"{name} prefix {f['fraction']}: {aurocs}; {_gap('head - shuffled', f['head_vs_shuffled'])}")
        within, chance = everywhere["within_problem"]["head"], everywhere["head_above_chance"]
        print(f"{name}, all positions: head AUROC - 0.5 {chance['estimate']:+.3f} [{chance['low']:+.3f}, "
              f"{chance['high']:+.3f}]; within-problem head AUROC {within['estimate']:.3f} [{within['low']:.3f}, "
              f"{within['high']:.3f}] over {within['n_mixed']} of {within['n_problems']} problems with mixed outcomes "
              f"(shuffled heads {everywhere['within_problem']['shuffled']:.3f})")
    print(f"wrote {args.out}/results.json and {args.out}/report.html")


def _sample(args) -> None:
    from metalens.introspect.sample_run import SampleConfig, run_sample

    config = SampleConfig(args.head, rollouts=args.rollouts, alphas=args.alphas, beta=args.beta, every=args.every,
                          live=args.live, live_alphas=tuple(args.live_alphas), cv=args.cv)
    res = run_sample(_model(args), config, out=args.out)
    for row in res.matched:
        print(f"{row['method']} alpha={row['alpha']:g}: acc {row['accuracy']:.3f} at {row['tokens']:.1f} tokens "
              f"(majority at same tokens: {row['majority_at_same_tokens']:.3f})")
    for row in (res.cv or {}).get("paired", []):
        if row.get("majority_n"):
            alpha = "" if row["alpha"] is None else f" alpha={row['alpha']:g}"
            print(f"{args.cv}-fold, all questions: {row['method']}{alpha}: acc {row['accuracy']:.3f} at "
                  f"{row['tokens']:.1f} tokens vs majority@{row['majority_n']} {row['majority_accuracy']:.3f} at "
                  f"{row['majority_tokens']:.1f}: {row['difference']:+.3f} "
                  f"[{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}], "
                  f"Holm p {row['p_holm']:.3f} of {row['n_comparisons']} comparisons")
    for row in res.live or []:
        print(f"live alpha={row['alpha']:g}: acc {row['accuracy']:.3f} at {row['tokens']:.1f} tokens, "
              f"{row['decode_steps']:.1f} steps, {row['seconds']:.2f} s per question ({row['n_problems']} questions)")
    print(f"wrote {args.out}/results.json and {args.out}/report.html")


def register(subparsers) -> None:
    """Add `introspect` with sub-verbs train, eval and sample."""
    from metalens.cli import add_model_args

    intro = subparsers.add_parser("introspect", help="reward/length heads in reserved logits, adaptive sampling")
    sub = intro.add_subparsers(dest="introspect_verb", required=True)

    train = sub.add_parser("train", help="generate rollouts (resumable) and train the reserved-logit head")
    add_model_args(train)
    train.add_argument("--task", default="arithmetic", help="'arithmetic' or 'jsonl'")
    train.add_argument("--tasks", default=None, help="JSONL of {prompt, answer} (with --task jsonl)")
    train.add_argument("--out", required=True)
    train.add_argument("--rollouts", default=None, help="rollout directory (default OUT/rollouts)")
    train.add_argument("--n-tasks", type=int, default=80)
    train.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    train.add_argument("--n-samples", type=int, default=6)
    train.add_argument("--max-new-tokens", type=int, default=40)
    train.add_argument("--temperature", type=float, default=1.0)
    train.add_argument("--mode", default="head", choices=["head", "lora"])
    train.add_argument("--steps", type=int, default=100, help="L-BFGS iterations of the head fit")
    train.add_argument("--lora-steps", type=int, default=20)
    train.add_argument("--test-fraction", type=float, default=0.3)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="held-out calibration vs probe, verbal confidence, shuffled labels")
    add_model_args(ev)
    ev.add_argument("--head", required=True, help="the head directory written by `train` (OUT/head)")
    ev.add_argument("--out", required=True)
    ev.add_argument("--rollouts", default=None)
    ev.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ev.add_argument("--no-verbal", action="store_true", help="skip asking the model for its confidence")
    ev.add_argument("--cv", type=int, default=0, help="also K-fold cross-validation by problem over all rollouts")
    ev.add_argument("--n-shuffles", type=int, default=3, help="shuffled-label heads in the null baseline")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=_eval)

    sa = sub.add_parser("sample", help="adaptive sampler vs majority voting / best-of-N (Pareto curve)")
    add_model_args(sa)
    sa.add_argument("--head", required=True)
    sa.add_argument("--out", required=True)
    sa.add_argument("--rollouts", default=None)
    sa.add_argument("--alphas", type=float, nargs="+", default=None, help="token costs to sweep")
    sa.add_argument("--beta", type=float, default=0.0, help="latency cost per decode step")
    sa.add_argument("--every", type=int, default=4, help="tokens between checkpoints")
    sa.add_argument("--live", type=int, default=0, help="also generate live on this many held-out problems")
    sa.add_argument("--live-alphas", type=float, nargs="+", default=[0.003, 0.01])
    sa.add_argument("--cv", type=int, default=0, help="also compare on every problem with K-fold heads")
    sa.set_defaults(func=_sample)
