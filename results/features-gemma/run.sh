#!/usr/bin/env bash
# Which features of the trained gemma-3-270m SAE (results/sae-gemma: TopK, 1024 features, k 32, at
# blocks.6.hook_resid_post) carry the greater-than task's prob_diff (`metalens features`), scored twice
# on the same 32 pairs: attribution patching (the gradient at the clean run) and its integrated-gradients
# variant (5 points from the corrupted site activation to the clean one), each checked by exact patching
# of its top 10 features, 5 random control features and the whole site, with bootstrap intervals over
# pairs, and a feature card per top feature from the SAE's own training text (ETHICS commonsense-morality
# test split, MIT licence).
# Needs the SAE that results/sae-gemma/run.sh writes to $SAE (runs/sae-gemma/sae). Computed in float32
# on CPU; about 17 minutes for both on a busy 2-core CPU (estimated from a timing probe with a random SAE
# of this shape: one forward of 8 pairs 3.6 s, a forward and backward ~9 s, cards 0.2 s per text).
# Run from the repo root; results-<method>.json, cards-<method>.json and time-<method>.txt land here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/features-gemma}
SAE=${SAE:-runs/sae-gemma/sae}
DATA=${DATA:-../shared/data/ethics/cm_test.csv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for METHOD in attribution ig; do
  /usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -o "$OUT/time-$METHOD.txt" \
    $PY -m metalens.cli features --model gemma-3-270m --device cpu --task greater-than --n 32 --sae "$SAE" \
      --method "$METHOD" --ig-steps 5 --top 10 --controls 5 --n-boot 1000 --data "$DATA" --card-texts 400 --max-length 64 \
      --seed 0 --out "$RUN-$METHOD"
  cp "$RUN-$METHOD/results.json" "$OUT/results-$METHOD.json"
  cp "$RUN-$METHOD/cards.json" "$OUT/cards-$METHOD.json"
  cat "$OUT/time-$METHOD.txt"
done
