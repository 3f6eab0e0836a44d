"""metalens, steering-vectors and repeng side by side: same model, layer, pairs, prompts and checker.

    python bench/steer_peers.py --setup                      # once: .venv-peers with the two peers (see below)
    .venv-peers/bin/python bench/steer_peers.py [--model gemma-3-270m] [--layer 6] [--rule ocean] \\
        [--n-prompts 16] [--new 24] [--metalens 0.5 1 2 4] [--steering-vectors 0.5 1 2 4] [--repeng 1 2 4 8] \\
        [--json FILE]
    python bench/steer_peers.py --smoke                      # tiny random model, a few tokens, whatever is importable

Each library trains its own vector at `--layer` on the rule's contrastive pairs, with its own
method (metalens: mean difference, averaged over tokens for shipped pairs; steering-vectors: mean
difference at the last token; repeng: first principal component of pair differences at the last
token, unit norm), and sweeps its own strength scale (repeng's unit vectors need larger
coefficients). All three add to the same site, the output of block `--layer` (metalens'
`blocks.L.hook_resid_post`, steering-vectors' `decoder_block` L, repeng's layer L) at every
position, and all generate through the same `metalens.generate` call (greedy, same prompts, chat
template when the model has one), so tokens/s compares the cost of each library's hooks. Printed
per library and strength: adherence (rule checker, Wilson 95 %), degenerate share (empty output,
or fewer than 40 % distinct words in 6 or more), share of outputs changed from the library's own
strength 0, and tokens/s; then each library's best strength
(highest adherence with degenerate share <= --max-degenerate).

Peers are imported when present and skipped with a message otherwise. `--setup` makes
`.venv-peers` (git-ignore it), a venv that sees this project's `.venv` packages through a `.pth`
line and adds `pip install --no-deps steering-vectors repeng`, leaving `.venv` untouched. repeng 0.4
uses `np.float_`, gone in numpy 2: this script restores it as `np.float64` before importing repeng.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_model, bench_parser, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEERS = ["steering-vectors", "repeng"]


def setup(venv: Path = PEERS_VENV) -> None:
    """Create `venv` seeing the current environment's packages, and install the peers into it alone."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # An `import` line in a .pth runs at start-up; addsitedir also processes that dir's own .pth files
    # (the editable metalens install lives in one).
    Path(site, "metalens_base.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", *PEERS], check=True)
    print(f"ready: {venv}/bin/python bench/steer_peers.py ...")


def degenerate(text: str) -> bool:
    """Empty, or 6+ words of which fewer than 40 % are distinct (loops such as 'the the the')."""
    words = text.split()
    return not words or (len(words) >= 6 and len(set(words)) / len(words) < 0.4)


def _metalens(model, positive, negative, positions, layer):
    from metalens.steering import train_steering_vector

    vec = train_steering_vector(model, positive, negative, layers=[layer], positions=positions)
    return lambda s: contextlib.nullcontext(vec.edits(model, s))


def _steering_vectors(model, positive, negative, positions, layer):
    from steering_vectors import train_steering_vector

    vec = train_steering_vector(model.hf, model.tokenizer, list(zip(positive, negative)), layers=[layer],
                                layer_type="decoder_block", read_token_index=-1, show_progress=False)

    @contextlib.contextmanager
    def steer(s):
        with vec.apply(model.hf, multiplier=s, min_token_index=0):
            yield None

    return steer


def _repeng(model, positive, negative, positions, layer):
    import numpy as np

    if not hasattr(np, "float_"):
        np.float_ = np.float64  # repeng 0.4 names np.float_ (removed in numpy 2) in its annotations
    from repeng import ControlModel, ControlVector, DatasetEntry

    control = ControlModel(model.hf, [layer])  # wraps block `layer` in place; unwrapped after each use
    try:
        vec = ControlVector.train(control, model.tokenizer, [DatasetEntry(p, n) for p, n in zip(positive, negative)],
                                  hidden_layers=[layer])
    finally:
        control.unwrap()
    for other in range(model.n_layers):  # some repeng versions wrap every layer: give them nothing to add
        vec.directions.setdefault(other, np.zeros(model.d_model, np.float32))

    @contextlib.contextmanager
    def steer(s):
        wrapped = ControlModel(model.hf, [layer])
        try:
            wrapped.set_control(vec, s)
            yield None
        finally:
            wrapped.reset()
            wrapped.unwrap()

    return steer


LIBRARIES = {"metalens": _metalens, "steering-vectors": _steering_vectors, "repeng": _repeng}
MODULES = {"metalens": "metalens", "steering-vectors": "steering_vectors", "repeng": "repeng"}


def _importable(name: str) -> str | None:
    try:
        if name == "repeng":
            import numpy as np

            if not hasattr(np, "float_"):
                np.float_ = np.float64
        __import__(MODULES[name])
    except Exception as err:  # noqa: BLE001 - any failure: report it and skip the library
        return f"{type(err).__name__}: {err}"
    return None


def main(argv=None) -> dict:
    parser = bench_parser(__doc__)
    parser.add_argument("--setup", action="store_true", help=f"create {PEERS_VENV.name} with the peers and exit")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, 4 prompts, 4 tokens, one strength each")
    parser.add_argument("--layer", type=int, default=None, help="block whose output is steered (default: middle)")
    parser.add_argument("--rule", default="ocean", help="a shipped rule (pairs, held-out prompts, keyword checker)")
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--new", type=int, default=24, help="new tokens per prompt")
    parser.add_argument("--max-degenerate", type=float, default=0.25)
    for name, default in (("metalens", [0.5, 1, 2, 4]), ("steering-vectors", [0.5, 1, 2, 4]), ("repeng", [1, 2, 4, 8])):
        parser.add_argument(f"--{name}", type=float, nargs="+", default=default, help=f"{name}'s strengths")
    args = parser.parse_args(argv)
    if args.setup:
        setup()
        return {}
    import metalens
    from metalens.stats import wilson_ci
    from metalens.steering import checker_for, pairs_for_rule
    from metalens.steering.rules import find_rule, heldout_prompts

    if args.smoke:
        args.model, args.n_prompts, args.new = "tiny", 4, 4
    model = bench_model(args.model, args.device, args.dtype)
    layer = model.check_layer(args.layer if args.layer is not None else model.n_layers // 2)
    rule = find_rule(args.rule)
    positive, negative, positions = pairs_for_rule(rule)
    checker = checker_for(rule, model, positive, negative)
    prompts = heldout_prompts(rule)[:args.n_prompts]
    print(f"model={model.name} layer={layer} rule={rule.name} pairs={len(positive)} prompts={len(prompts)} new={args.new}")
    rows, skipped = [], {}
    for name, build in LIBRARIES.items():
        why = _importable(name)
        if why:
            skipped[name] = why
            print(f"skipping {name}: not importable ({why}); run `python bench/steer_peers.py --setup` and use "
                  f"{PEERS_VENV.name}/bin/python")
            continue
        started = time.perf_counter()
        steer = build(model, positive, negative, positions, layer)
        train_s = time.perf_counter() - started
        strengths = [0.0] + [s for s in getattr(args, name.replace("-", "_")) if s][: 1 if args.smoke else None]
        for strength in strengths:
            with steer(strength) as edits:
                started = time.perf_counter()
                out = metalens.generate(model, prompts, max_new_tokens=args.new, chat=model.is_chat,
                                        edits=edits if strength else None)
                seconds = time.perf_counter() - started
            if not strength:
                base_texts = out.texts
            ok = checker(out.texts)
            ci = wilson_ci(sum(map(bool, ok)), len(ok))
            rows.append({"library": name, "strength": strength, "adherence": ci.estimate, "low": ci.low,
                         "high": ci.high, "degenerate": sum(map(degenerate, out.texts)) / len(out.texts),
                         "changed": sum(a != b for a, b in zip(out.texts, base_texts)) / len(out.texts),
                         "tokens_per_s": sum(map(len, out.ids)) / seconds, "train_s": train_s,
                         "sample": out.texts[0]})
    print(f"{'library':18s} {'strength':>8s} {'adherence [95% CI]':>22s} {'degenerate':>10s} {'changed':>8s} "
          f"{'tokens/s':>9s}")
    for r in rows:
        print(f"{r['library']:18s} {r['strength']:8g} {r['adherence']:8.2f} [{r['low']:.2f}, {r['high']:.2f}]"
              f"{r['degenerate']:11.2f} {r['changed']:8.2f} {r['tokens_per_s']:9.1f}")
    best = {}
    for name in {r["library"] for r in rows}:
        ok = [r for r in rows if r["library"] == name and r["strength"] and r["degenerate"] <= args.max_degenerate]
        if ok:
            best[name] = max(ok, key=lambda r: (r["adherence"], -abs(r["strength"])))
            b = best[name]
            print(f"best {name}: strength {b['strength']:g}, adherence {b['adherence']:.2f} "
                  f"[{b['low']:.2f}, {b['high']:.2f}], degenerate {b['degenerate']:.2f}")
    result = {"model": model.name, "layer": layer, "rule": rule.name, "n_prompts": len(prompts),
              "new_tokens": args.new, "rows": rows, "best": best, "skipped": skipped}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
