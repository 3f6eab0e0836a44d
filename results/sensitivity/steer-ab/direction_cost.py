"""What steering gemma-3-270m along a random unit direction costs on neutral text, against natural directions.

    .venv/bin/python results/sensitivity/steer-ab/direction_cost.py   (from the repo root; ~2 min CPU)

At block 6 (the plant's block), on the validation half of steer-ab's neutral texts, the mean change of
next-token loss (nats/token) when a direction scaled to 0.05 and 0.1 of the block's mean residual norm
(steer-ab's residual unit) is added at every position: two seeded random unit directions (as
`PlantedSteerable` draws u), two seeded random directions drawn from the activations' own covariance
(a random combination of the centred activations: a candidate for a steerable planted direction), the
activations' top principal direction and their mean direction.
"""
import numpy as np
import torch

import metalens
from metalens import sites
from metalens.steering.ab.costs import neutral_loss, split_neutral
from metalens.steering.ab.workflow import NEUTRAL

LAYER, STEPS = 6, (0.05, 0.1)
model = metalens.load_model("gemma-3-270m", device="cpu")
texts = split_neutral(metalens.read_texts(NEUTRAL))[0]
acts = metalens.capture(model, texts, [sites.resid_post(LAYER)], positions="all", progress=False,
                        dtype=torch.float32)[sites.resid_post(LAYER)]  # [n_tokens, d_model]
norm = float(acts.norm(dim=-1).mean())
base = neutral_loss(model, texts)


def cost(direction: torch.Tensor, step: float) -> float:
    add = direction / direction.norm() * norm * step  # [d_model]
    return float(np.nanmean(neutral_loss(model, texts, {sites.resid_post(LAYER): lambda x: x + add.to(x.dtype)}) - base))


directions = {f"random unit direction, seed {k}": torch.randn(model.d_model, generator=torch.Generator().manual_seed(k))
              for k in (0, 1)}
centred = acts - acts.mean(0)  # [n_tokens, d_model]
for k in (0, 1):
    weights = torch.randn(centred.shape[0], generator=torch.Generator().manual_seed(k))  # [n_tokens]
    directions[f"random direction from the activations' covariance, seed {k}"] = weights @ centred
directions["top principal direction of the activations"] = torch.linalg.svd(centred, full_matrices=False)[2][0]
directions["mean activation direction"] = acts.mean(0)
spread = acts.std(0)
print(f"block {LAYER}: mean residual norm {norm:.1f}; per-dimension std median {float(spread.median()):.2f}, "
      f"max {float(spread.max()):.1f}")
for name, d in directions.items():
    print(f"{name}: cost at {STEPS[0]} / {STEPS[1]} residual norms: "
          + " / ".join(f"{cost(d, s):+.3f}" for s in STEPS) + " nats/token")
