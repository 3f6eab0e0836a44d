"""`metalens sensitivity steer-ab` and `metalens sensitivity mentor`: the steering area's planted-effect
checks (`metalens.sensitivity`), each checking its inputs and every seed's split before the model loads."""
from __future__ import annotations

from metalens.options import (add_data_arg, add_layers_arg, add_model_args, check_out, float_range, load_model_from_args,
                              mark_out, nonneg_int, positive_int)
from metalens.sensitivity_cli import add_sweep_args, print_sweep
from metalens.steering.cli import strength
from metalens.steering.vector import MAX_STRENGTH


def _sensitivity_steer_ab(args) -> None:
    import numpy as np

    from metalens.steering.ab.items import read_ab, split_items
    from metalens.steering.ab.sensitivity import SteerABSensitivityConfig, plant_layer, run_steer_ab_sensitivity
    from metalens.steering.ab.workflow import SteerABConfig

    out = check_out(args.out, "sensitivity-steer-ab")
    steer = SteerABConfig(str(args.data), layers=args.layers, strengths=tuple(args.steer_strengths),
                          max_items=args.max_items, open_items=0, batch_size=args.batch_size)
    config = SteerABSensitivityConfig(steer, plant_layer=args.plant_layer, strengths=tuple(args.strengths),
                                      seeds=args.seeds, plant_direction=args.plant_direction)
    items = read_ab(steer.data)  # the items are read and each seed's split checked before the model loads
    for seed in range(args.seeds):  # the sample and split run_steer_ab will draw with this seed
        pick = items if not args.max_items or args.max_items >= len(items) else \
            [items[k] for k in sorted(np.random.default_rng(seed).permutation(len(items))[:args.max_items])]
        if len(pick) < 3 or len(split_items(pick, steer.fractions, seed)[2]) < 2:
            raise ValueError(f"--max-items/--data: seed {seed} leaves fewer than 2 test items of {len(pick)}; an "
                             "interval needs two: give more items.")
    model = load_model_from_args(args)
    layer = plant_layer(model, config)
    mark_out(out, "sensitivity-steer-ab")
    print_sweep(run_steer_ab_sensitivity(model, config, out=out), out, f"planted at block {layer}")


def register_sensitivity(subparsers) -> None:
    """Add `steer-ab` under `metalens sensitivity`: the detection curve of a planted steerable behaviour."""
    from metalens.steering.ab.planted import DIRECTIONS
    from metalens.steering.ab.sensitivity import DEFAULT_STRENGTHS

    p = subparsers.add_parser("steer-ab", help="plant a steerable behaviour at several strengths and count how often "
                              "run_steer_ab claims steerability (and in which direction)")
    add_model_args(p)
    add_sweep_args(p, strengths=DEFAULT_STRENGTHS, strengths_help="planted strengths in logits of matching-minus-other "
                   "per unit of steering strength along the planted direction (0 = unplanted)")
    add_data_arg(p, required=True, help="model-written-evaluations JSONL; each seed relabels its items at random")
    add_layers_arg(p, help="steer-ab's candidate layers", default_note="4 spread out, model.default_layers(4)")
    p.add_argument("--plant-layer", type=nonneg_int, default=None, metavar="L",
                   help="the block carrying the planted behaviour, one of the candidate layers and not the last "
                   "(default: the middle candidate)")
    p.add_argument("--plant-direction", choices=DIRECTIONS, default="activations",
                   help="the planted direction: a draw from the block's activations' covariance (default), or a "
                   "uniform random unit vector (costly to steer along on models with massive activations)")
    p.add_argument("--max-items", type=positive_int, default=None, help="use a seeded sample of this many items")
    p.add_argument("--steer-strengths", type=strength, nargs="+", metavar="S",
                   default=[-0.5, -0.3, -0.2, -0.1, -0.05, 0, 0.05, 0.1, 0.2, 0.3, 0.5],
                   help="steer-ab's strength grid (its --strengths; default the same as steer-ab's)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.set_defaults(func=_sensitivity_steer_ab)


def _sensitivity_mentor(args) -> None:
    import tempfile

    from metalens.steering.mentor.data import read_queries, split_queries, subsample_queries
    from metalens.steering.mentor.graph import RuleGraph
    from metalens.steering.mentor.sensitivity import (MentorSensitivityConfig, run_mentor_sensitivity, topic_inputs,
                                                      topic_rule)
    from metalens.steering.mentor.workflow import MentorConfig

    layers = args.layers or [None]
    if len(layers) != 1 or layers[0] == "all":
        raise ValueError(f"--layers {' '.join(map(str, args.layers))}: mentor steers one block; give one, e.g. "
                         "--layers 6 (default: the middle block).")
    mentor = MentorConfig(rounds=args.rounds, layer=layers[0], top_k=args.top_k, retrieval=args.retrieval,
                          max_per_domain=args.max_per_domain, max_new_tokens=args.max_new_tokens, assessor="checker",
                          eval_assessor=False, batch_size=args.batch_size)
    config = MentorSensitivityConfig(mentor, rule=args.rule, strengths=tuple(args.strengths), seeds=args.seeds)
    with tempfile.TemporaryDirectory() as tmp:  # each seed's split is checked before the model loads
        queries, tree = topic_inputs(topic_rule(args.rule), tmp)
        items = read_queries(queries)
        RuleGraph.static(tree)
        for seed in range(args.seeds):
            pick = subsample_queries(items, args.max_per_domain, seed) if args.max_per_domain else items
            split_queries(pick, mentor.fractions, seed)
    out = check_out(args.out, "sensitivity-mentor")
    model = load_model_from_args(args)
    mark_out(out, "sensitivity-mentor")
    print_sweep(run_mentor_sensitivity(model, config, out=out), out, f"topic rule '{config.rule}'")


def register_mentor_sensitivity(subparsers) -> None:
    """Add `mentor` under `metalens sensitivity`: the detection curve of a topic rule by MENTOR's steering strength."""
    from metalens.steering.mentor.sensitivity import DEFAULT_STRENGTHS

    p = subparsers.add_parser("mentor", help="run MENTOR on a topic rule (where steering is known to work) at several "
                              "steering strengths and count how often its retrieved condition lowers attack success "
                              "against no_rules")
    add_model_args(p)
    add_sweep_args(p, strengths=DEFAULT_STRENGTHS, strength_type=float_range(0, MAX_STRENGTH),
                   seeds_help="split seeds per strength", strengths_help="MENTOR steering strengths (multiples of the "
                   "retrieved rules' vector sum; 0 = unsteered), each run as run_mentor's one-value strength grid")
    add_layers_arg(p, help="the one block to steer", allow_all=False, default_note="the middle block")
    p.add_argument("--rule", default="ocean", help="a shipped topic rule with keywords (ocean, space, food, cheerful; "
                   "default ocean): its held-out prompts are the queries, its keywords what a reply must hold")
    p.add_argument("--rounds", type=nonneg_int, default=2, help="self-evolution rounds (checker assessor; default 2, "
                   "as the published run: a Holm family of 5 comparisons)")
    p.add_argument("--top-k", type=positive_int, default=2, help="rules retrieved per query")
    p.add_argument("--retrieval", default="activations", choices=["activations", "bow"])
    p.add_argument("--max-per-domain", type=positive_int, default=None,
                   help="use a seeded sample of this many of the rule's prompts")
    p.add_argument("--max-new-tokens", type=positive_int, default=16)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.set_defaults(func=_sensitivity_mentor)
