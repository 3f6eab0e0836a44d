"""Reproduce the README numbers for rules run at the layer/strength chosen for ocean (needs runs/steering/ocean).

    python scripts/steering_reproduce_fixed.py cheerful space food
"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import metalens
import metalens.steering
from metalens.report import save_json


def main(names: list[str]) -> None:
    """Run each named shipped rule at the ocean run's layer and strength."""
    base = json.load(open("runs/steering/ocean/results.json"))
    layer, strength, n_new = base["layer"], base["strength"], base["max_new_tokens"]
    prompts = [s["prompt"] for s in base["samples"]]
    plain = [s["unsteered"] for s in base["samples"]]
    model = metalens.load_model("gemma-3-270m", device="cpu")
    base_nll = float(np.nanmean(metalens.steering.token_loss(model, prompts, plain)))
    for name in names:
        rule = metalens.steering.library()[name]
        pos, neg, positions = metalens.steering.pairs_for_rule(rule)
        vec = metalens.steering.train(model, pos, neg, layers=[layer], positions=positions)
        out = metalens.steering.generate(model, prompts, vec, max_new_tokens=n_new, strength=strength)
        check = metalens.steering.checker_for(rule)
        u, s = metalens.steering.adherence(check(plain)), metalens.steering.adherence(check(out))
        nll = float(np.nanmean(metalens.steering.token_loss(model, prompts, out)))
        res = {"rule": name, "layer": layer, "strength": strength, "n": len(prompts), "unsteered": u.to_dict(),
               "steered": s.to_dict(), "base_nll": base_nll, "steered_nll": nll, "fluency_cost": nll - base_nll,
               "samples": [{"prompt": p, "unsteered": a, "steered": b} for p, a, b in zip(prompts, plain, out)]}
        save_json(f"runs/steering/{name}_fixed.json", res)
        print(f"{name}: unsteered {u.rate:.2f} [{u.low:.2f},{u.high:.2f}] steered {s.rate:.2f} [{s.low:.2f},{s.high:.2f}] "
              f"fluency cost {nll - base_nll:+.3f} nats/token", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
