#!/usr/bin/env bash
# Ocean steering on gemma-3-270m by one SAE feature (clamp and add) beside the rule's vector, on the same
# 24 prompts, checker and fluency measure as results/steering-ocean: `metalens steer --sae`.
# The SAE is the TopK one results/sae-gemma/run.sh trains (blocks.6.hook_resid_post, 1024 features), by
# default at runs/sae-gemma/sae; run that first (about 10 minutes) or point SAE= at its folder.
# The feature is chosen on the rule's 16 shipped contrastive pairs (largest mean activation on the ocean
# texts minus the others), never on a prompt; each arm's strength on the first 8 prompts; scores on the
# other 16. Writes results/steering-feature/{results.json,cards.json,time.txt}.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SAE=${SAE:-runs/sae-gemma/sae}
RUN=${RUN:-runs/steering/ocean-feature}
OUT=results/steering-feature
if [ ! -f "$SAE/cfg.json" ]; then
    echo "No SAE at $SAE: run 'bash results/sae-gemma/run.sh' first (or set SAE=DIR)." >&2
    exit 1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p runs/steering
head -24 steering/data/prompts_heldout.txt > runs/steering/prompts24.txt
/usr/bin/time -f "$(date -u +%FT%TZ) wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli steer --model gemma-3-270m --device cpu --rule ocean --prompts runs/steering/prompts24.txt \
    --sae "$SAE" --feature-mode clamp add --feature-select contrast --feature-unit max --strengths 2 4 8 \
    --vector-strengths 1 2 --max-new-tokens 16 --n-select 8 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cp "$RUN/cards.json" "$OUT/cards.json"  # the feature cards (also in $RUN/report.html)
cat "$OUT/time.txt"
