"""Reproduce the README numbers for rules run at the layer/strength chosen for ocean (needs runs/steering/ocean).

    python results/steering-fixed-rules/reproduce.py cheerful space food   (from the repo root; results/steering-fixed-rules/run.sh runs it)
"""
import sys
import warnings

import numpy as np

import metalens
import metalens.steering as steering
from metalens.power import paired_summary
from metalens.report import save_json


def main(names: list[str]) -> None:
    """Run each named shipped rule at the ocean run's layer and strength."""
    warnings.simplefilter("ignore")
    base = steering.SteerResult.load("runs/steering/ocean")
    layer, strength, n_new = base.layer, base.strength, base.config.max_new_tokens
    prompts = [s["prompt"] for s in base.samples]
    plain = [s["unsteered"] for s in base.samples]
    model = metalens.load_model("gemma-3-270m", device="cpu")
    base_nll = float(np.nanmean(steering.token_loss(model, prompts, plain)))
    for name in names:
        rule = steering.library()[name]
        pos, neg, positions = steering.pairs_for_rule(rule)
        vec = steering.train_steering_vector(model, pos, neg, layers=[layer], positions=positions)
        out = steering.generate(model, prompts, vec, max_new_tokens=n_new, strength=strength)
        check = steering.checker_for(rule)
        passed_plain, passed_out = check(plain), check(out)
        u, s = steering.adherence(passed_plain), steering.adherence(passed_out)
        nll = float(np.nanmean(steering.token_loss(model, prompts, out)))
        res = {"rule": name, "layer": layer, "strength": strength, "n": len(prompts), "unsteered": u.to_dict(),
               "steered": s.to_dict(),
               # the same prompts with and without the vector: a paired test, and what it could detect
               "paired": {"steered_minus_unsteered": paired_summary([float(x) for x in passed_out],
                                                                    [float(x) for x in passed_plain])},
               "base_nll": base_nll, "steered_nll": nll, "fluency_cost": nll - base_nll,
               "samples": [{"prompt": p, "unsteered": a, "steered": b} for p, a, b in zip(prompts, plain, out)]}
        save_json(f"runs/steering/{name}_fixed.json", res)
        print(f"{name}: unsteered {u.rate:.2f} [{u.low:.2f},{u.high:.2f}] steered {s.rate:.2f} [{s.low:.2f},{s.high:.2f}] "
              f"fluency cost {nll - base_nll:+.3f} nats/token", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
