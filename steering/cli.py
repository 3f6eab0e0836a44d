"""`metalens steer` (rule -> vector -> sweep -> steered generation), `metalens steer-ab` (A/B behaviour
items -> CAA vector -> propensity per layer x strength) and `metalens mentor` (rule graph -> retrieved rule
vectors -> attack success): each writes results.json + report.html.

Every input is checked before the model loads and before anything is written under --out: numbers by
their flag's checker, files by reading them, --out by `check_out`; `mark_out` claims the folder when
the run starts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from metalens.options import (add_data_arg, add_fast_arg, add_layers_arg, add_model_args, add_out_arg, add_seed_arg, check_out,
                              existing_dir, existing_file, float_range, load_model_from_args, mark_out, nonneg_int,
                              positive_float, positive_int)
from metalens.steering.vector import MAX_STRENGTH

strength = float_range(-MAX_STRENGTH, MAX_STRENGTH)


def gguf_path(text: str) -> Path:
    """A `type=` for --gguf: a file to write, not an existing folder."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: --gguf names the .gguf file to write")
    return path


def vector_path(text: str) -> Path:
    """A `type=` for --vector: a folder written by SteeringVector.save (or an older .safetensors file)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such folder (a saved SteeringVector)")
    return path


FEATURE_ONLY = ("feature", "feature_mode", "feature_select", "feature_unit", "vector_strengths", "no_vector", "no_cards")
VECTOR_ONLY = {"vector": "--vector", "gguf": "--gguf", "n_validate": "--n-validate", "layers": "--layers"}


def _steer_feature(args) -> None:
    import metalens
    from metalens.steering.rules.features import FeatureSteerConfig, run_steer_feature
    from metalens.steering.rules.library import find_rule, pairs_for_rule

    used = [flag for key, flag in VECTOR_ONLY.items() if getattr(args, key) is not None]
    used += ["--rounds"] * (args.rounds > 0) + ["--method pca"] * (args.method != "mean_diff")
    used += ["--judge model"] * (args.judge != "checker")
    if args.no_vector and args.vector_strengths:
        raise ValueError("--no-vector drops the vector arm and --vector-strengths sets its strengths: give one of them.")
    if used:
        raise ValueError(f"--sae steers by a feature at the SAE's own site; {', '.join(used)} belong to vector "
                         "steering: drop them (the vector arm beside the feature is trained at the SAE's block).")
    config = FeatureSteerConfig(args.rule, str(args.sae), feature=args.feature,
                                modes=tuple(args.feature_mode or ("clamp",)),
                                select=args.feature_select or "contrast", unit=args.feature_unit or "max",
                                strengths=tuple(args.strengths or (2.0, 4.0, 8.0)),
                                vector_strengths=() if args.no_vector else tuple(args.vector_strengths or (1.0, 2.0)),
                                prompts=metalens.read_texts(args.prompts) if args.prompts else None,
                                pairs=str(args.pairs) if args.pairs else None, max_new_tokens=args.max_new_tokens,
                                n_select=args.n_select, cards=not args.no_cards)
    pairs_for_rule(find_rule(args.rule), config.pairs)
    sae = _load_feature_sae(args)  # a bad folder or index fails here, not after the model loads
    out = check_out(args.out, "steer")
    model = load_model_from_args(args)
    _check_feature_sae(args, sae, model)
    mark_out(out, "steer")
    result = run_steer_feature(model, config, out=out)
    print(result.summary())
    print(f"wrote {out}/results.json, {out}/report.html" + (f", {out}/cards.json" if result.cards else "")
          + (f" and {out}/vector/" if result.vector else ""))


def _steer(args) -> None:
    import metalens
    from metalens.steering.rules.library import find_rule, pairs_for_rule
    from metalens.steering.rules.workflow import SteerConfig, run_steer
    from metalens.steering.vector import SteeringVector

    if args.sae is not None:
        return _steer_feature(args)
    stray = [f"--{k.replace('_', '-')}" for k in FEATURE_ONLY if getattr(args, k) not in (None, False)]
    if stray:
        raise ValueError(f"{', '.join(stray)} steer by an SAE feature: add --sae DIR (a SAELens or Gemma Scope "
                         "folder).")
    config = SteerConfig(args.rule, prompts=metalens.read_texts(args.prompts) if args.prompts else None,
                         pairs=str(args.pairs) if args.pairs else None, vector=str(args.vector) if args.vector else None,
                         layers=args.layers, strengths=tuple(args.strengths or (0.5, 1.0, 2.0)), method=args.method,
                         rounds=args.rounds, judge=args.judge, max_new_tokens=args.max_new_tokens,
                         n_select=args.n_select, n_validate=args.n_validate)
    pairs_for_rule(find_rule(args.rule), config.pairs)  # a bad pairs file fails here, not after the model loads
    if config.vector:
        SteeringVector.load(config.vector)  # its tensors against its JSON (the model is checked once loaded)
    out = check_out(args.out, "steer")
    model = load_model_from_args(args)
    mark_out(out, "steer")
    result = run_steer(model, config, out=out)
    print(result.summary())
    print(f"wrote {out}/results.json, {out}/report.html and {out}/rulebook/")
    if args.gguf:
        path = result.book[result.rule.name].vector.to_gguf(args.gguf)
        print(f"wrote {path} (llama.cpp control vector, layer {result.layer}; use it as "
              f"--control-vector-scaled {path} {result.strength:g})")


def _steer_ab(args) -> None:
    import metalens
    from metalens.steering.ab.costs import split_neutral
    from metalens.steering.ab.items import read_ab
    from metalens.steering.ab.workflow import CONTROL, NEUTRAL, SteerABConfig, run_steer_ab

    config = SteerABConfig(str(args.data), layers=args.layers, strengths=tuple(args.strengths), seed=args.seed,
                           unit=args.unit, max_items=args.max_items, metric=args.metric,
                           steer_positions=args.steer_positions, cost_bound=args.cost_bound,
                           control_data=str(args.control_data) if args.control_data else None,
                           neutral=str(args.neutral) if args.neutral else None, open_items=args.open_items,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                           sae=str(args.sae) if args.sae else None, feature=args.feature)
    if args.feature is not None and args.sae is None:
        raise ValueError("--feature steers by an SAE feature: add --sae DIR (a SAELens or Gemma Scope folder).")
    sae = _load_feature_sae(args) if args.sae else None
    read_ab(config.data)  # every input file is read once before the model loads
    read_ab(config.control_data or CONTROL)
    split_neutral(metalens.read_texts(config.neutral or NEUTRAL))  # a validation half and a held-out half
    out = check_out(args.out, "steer-ab")
    model = load_model_from_args(args)
    if sae is not None:
        _check_feature_sae(args, sae, model)
    mark_out(out, "steer-ab")
    result = run_steer_ab(model, config, out=out)
    print(result.summary())
    print(f"wrote {out}/results.json, {out}/report.html and {out}/vector/")
    if args.gguf:
        path = result.vector.restricted([result.layer]).to_gguf(args.gguf)
        unit = "the layer's mean residual norm" if args.unit == "residual" else "the CAA mean difference"
        print(f"wrote {path} (llama.cpp control vector, layer {result.layer}, strength 1 = {unit})")


def _mentor(args) -> None:
    from metalens.steering.mentor.data import read_queries, split_queries, subsample_queries
    from metalens.steering.mentor.graph import RuleGraph
    from metalens.steering.mentor.workflow import MentorConfig, run_mentor

    layers = args.layers or [None]
    if len(layers) != 1 or layers[0] == "all":
        raise ValueError(f"--layers {' '.join(map(str, args.layers))}: mentor steers one block; give one, e.g. "
                         "--layers 6 (default: the middle block).")
    config = MentorConfig(queries=str(args.queries) if args.queries else None, tree=str(args.tree) if args.tree else None,
                          rounds=args.rounds, layer=layers[0], top_k=args.top_k, strengths=tuple(args.strengths),
                          retrieval=args.retrieval, seed=args.seed, max_per_domain=args.max_per_domain,
                          max_new_tokens=args.max_new_tokens, reflect_tokens=args.reflect_tokens,
                          assessor=args.assessor, eval_assessor=not args.no_eval_assessor, batch_size=args.batch_size)
    queries = read_queries(config.queries)  # every input is read and checked before anything is written
    if config.max_per_domain:
        queries = subsample_queries(queries, config.max_per_domain, config.seed)
    split_queries(queries, config.fractions, config.seed)
    RuleGraph.static(config.tree)
    out = check_out(args.out, "mentor")
    model = load_model_from_args(args)
    mark_out(out, "mentor")
    result = run_mentor(model, config, out=out)
    print(result.summary())
    print(f"wrote {out}/results.json, {out}/report.html, {out}/graph/ and {out}/vectors/")


def _add_sae_args(p, what: str, chosen_on: str) -> None:
    """--sae DIR and --feature I: one spelling for every steering verb."""
    p.add_argument("--sae", type=existing_dir, default=None, metavar="DIR",
                   help=f"a SAELens or Gemma Scope SAE folder: {what}")
    p.add_argument("--feature", type=nonneg_int, default=None, metavar="I",
                   help=f"the feature's index (default: chosen on {chosen_on})")


def _load_feature_sae(args):
    """The SAE named by --sae, read and its --feature checked before the model loads."""
    from metalens.sae import load_sae
    from metalens.steering.feature import FeatureSteer

    sae = load_sae(args.sae)
    if args.feature is not None:
        FeatureSteer(sae, args.feature)  # an index out of range names the SAE's range
    return sae


def _check_feature_sae(args, sae, model) -> None:
    """Refuse an SAE for another site or width, naming the folder (before --out is claimed)."""
    from metalens.steering.feature import FeatureSteer

    try:
        FeatureSteer(sae, args.feature or 0).check_model(model)
    except ValueError as err:
        raise ValueError(f"--sae {args.sae}: {err}") from None


def _add_steer(subparsers) -> None:
    p = subparsers.add_parser("steer", help="train a steering vector for a rule, sweep it, and report adherence")
    add_model_args(p)
    add_out_arg(p)
    add_layers_arg(p, help="candidate layers to sweep", default_note="4 spread out, model.default_layers(4)")
    p.add_argument("--rule", required=True, help="a shipped rule name (ocean, space, food, cheerful, no_dosage) or plain text")
    p.add_argument("--prompts", type=existing_file, default=None,
                   help="file with one prompt per line (default: the shipped held-out prompts)")
    p.add_argument("--pairs", type=existing_file, default=None,
                   help='JSONL of {"positive", "negative"} pairs (default: shipped or templates)')
    p.add_argument("--vector", type=vector_path, default=None, help="load this saved SteeringVector instead of training")
    p.add_argument("--strengths", type=strength, nargs="+", default=None, metavar="S",
                   help=f"candidate strengths, each in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}] (default 0.5 1 2)")
    p.add_argument("--method", default="mean_diff", choices=["mean_diff", "pca"])
    p.add_argument("--rounds", type=nonneg_int, default=0, help="refinement rounds (judge, retrain, keep the best)")
    p.add_argument("--judge", default="checker", choices=["checker", "model"])
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    add_fast_arg(p)
    p.add_argument("--n-select", type=positive_int, default=None,
                   help="prompts that choose layer and strength (default: a third)")
    p.add_argument("--n-validate", type=nonneg_int, default=None,
                   help="prompts refinement rounds decide on (default with --rounds: a third); the rest are the test set")
    p.add_argument("--gguf", type=gguf_path, default=None, help="also export the chosen vector (times its strength) "
                   "as a llama.cpp control-vector GGUF")
    f = p.add_argument_group("steering by an SAE feature (with --sae; the vector arm runs beside it on the same "
                             "prompts)")
    _add_sae_args(f, "steer by one of its features at its site", "the rule's pairs by --feature-select")
    f.add_argument("--feature-mode", nargs="+", choices=("clamp", "add"), default=None,
                   help="clamp: set the feature's activation to strength x unit (reconstruction error kept); add: add "
                   "strength x unit x its decoder row; both: one arm each (default clamp)")
    f.add_argument("--feature-select", choices=("contrast", "cosine"), default=None,
                   help="contrast: largest mean activation on positive minus negative pair texts (default); cosine: "
                   "decoder row closest to the rule's vector")
    f.add_argument("--feature-unit", choices=("max", "activation"), default=None,
                   help="what feature strength 1 is: the feature's largest activation on a positive pair text "
                   "(default) or one unit of raw activation; --strengths are in this unit (default 2 4 8)")
    f.add_argument("--vector-strengths", type=strength, nargs="+", default=None, metavar="S",
                   help="the vector arm's strengths (default 1 2)")
    f.add_argument("--no-vector", action="store_true", help="no vector arm (needed for an SAE off hook_resid_post)")
    f.add_argument("--no-cards", action="store_true", help="skip the feature's card (read from the rule's pair texts)")
    p.set_defaults(func=_steer)


def _add_steer_ab(subparsers) -> None:
    ab = subparsers.add_parser("steer-ab", help="CAA vector from A/B behaviour items; propensity, steerability and "
                               "costs per layer x strength, no judge")
    add_model_args(ab)
    add_out_arg(ab)
    add_data_arg(ab, required=True, help="model-written-evaluations JSONL (question, answer_matching_behavior, "
                 "answer_not_matching_behavior)")
    add_layers_arg(ab, help="candidate layers", default_note="4 spread out, model.default_layers(4)")
    add_seed_arg(ab)
    ab.add_argument("--strengths", type=strength, nargs="+", default=[-0.5, -0.3, -0.2, -0.1, -0.05, 0, 0.05, 0.1, 0.2,
                                                                      0.3, 0.5], metavar="S",
                    help=f"strength grid, each in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]; 0 is always added; each layer "
                    "keeps the widest range around 0 within --cost-bound")
    ab.add_argument("--cost-bound", type=positive_float, default=0.5, metavar="NATS",
                    help="largest rise of neutral-text loss (nats/token, on the validation half of the neutral texts) "
                    "a strength may cause and still count for steerability (default 0.5)")
    ab.add_argument("--metric", choices=("logit-diff", "prob"), default="logit-diff",
                    help="propensity: logit of the matching letter minus the other's (default) or p(matching) "
                    "normalised over the two letters")
    ab.add_argument("--steer-positions", choices=("response", "all"), default="response",
                    help="steer from the answer's '(' on (default, as CAA) or every position, the question's included")
    ab.add_argument("--unit", choices=("residual", "raw"), default="residual",
                    help="what strength 1 adds: a vector as long as the layer's mean residual norm (default) or the "
                    "raw CAA mean difference")
    ab.add_argument("--control-data", type=existing_file, default=None, help="A/B items unrelated to the behaviour, "
                    "for the accuracy cost (default: shipped general-knowledge items)")
    ab.add_argument("--neutral", type=existing_file, default=None,
                    help="neutral text, one per line, for the loss cost (default: shipped)")
    ab.add_argument("--max-items", type=positive_int, default=None, help="use a seeded sample of this many items")
    ab.add_argument("--open-items", type=nonneg_int, default=3, help="test questions answered open-ended, steered both ways")
    ab.add_argument("--max-new-tokens", type=positive_int, default=40)
    add_fast_arg(ab)
    ab.add_argument("--batch-size", type=positive_int, default=8)
    ab.add_argument("--gguf", type=gguf_path, default=None,
                    help="also export the chosen layer's vector as a llama.cpp control vector")
    _add_sae_args(ab, "steer along one feature's decoder row at its block instead of the CAA vector (the same "
                  "measurements; --unit residual scales it as a CAA vector, raw: strength 1 = its largest activation "
                  "on a matching-answer text)", "the training items: highest activation at the matching letter minus "
                  "the other")
    ab.set_defaults(func=_steer_ab)


def _add_mentor(subparsers) -> None:
    p = subparsers.add_parser("mentor", help="MENTOR: rule graph from self-assessment, retrieved rule vectors, "
                              "attack success on held-out risk queries")
    add_model_args(p)
    add_out_arg(p, help="output folder (resumable: a rerun continues after the last round)")
    add_layers_arg(p, help="the one block to steer", allow_all=False, default_note="the middle block")
    add_seed_arg(p)
    p.add_argument("--queries", type=existing_file, default=None,
                   help="JSONL of {query, domain, rubric, keywords} (default: shipped 60)")
    p.add_argument("--tree", type=existing_file, default=None,
                   help="static rule tree JSON (default: steering/data/mentor_tree.json)")
    p.add_argument("--rounds", type=nonneg_int, default=2, help="self-evolution rounds after the static round 0")
    p.add_argument("--top-k", type=positive_int, default=2, help="rules retrieved per query")
    p.add_argument("--strengths", type=strength, nargs="+", default=[0.5, 1.0, 2.0], metavar="S",
                   help=f"strength grid, each in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]; chosen on the validation queries")
    p.add_argument("--retrieval", default="activations", choices=["activations", "bow"])
    p.add_argument("--max-per-domain", type=positive_int, default=None,
                   help="use a seeded sample of this many queries per domain")
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    add_fast_arg(p)
    p.add_argument("--reflect-tokens", type=nonneg_int, default=24, help="tokens per reflection (0: verdict only)")
    p.add_argument("--assessor", default="self", help="'self', 'none', 'checker' (the keyword checker "
                   "as an oracle assessor: its verdicts, the query's rubric as the rule), or a model to load")
    p.add_argument("--no-eval-assessor", action="store_true", help="do not judge test responses with the assessor")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.set_defaults(func=_mentor)


def register(subparsers) -> None:
    """Add the `steer`, `steer-ab` and `mentor` verbs."""
    _add_steer(subparsers)
    _add_steer_ab(subparsers)
    _add_mentor(subparsers)
