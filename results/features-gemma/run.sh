#!/usr/bin/env bash
# Which features of the trained gemma-3-270m SAE (results/sae-gemma: TopK, 1024 features, k 32, at
# blocks.6.hook_resid_post) carry the greater-than task's prob_diff (`metalens features`): attribution
# patching over all 1024 features on 32 pairs (SAE spliced in with its error term), exact patching of
# the top 10, bootstrap intervals over pairs, Spearman and sign agreement, and a feature card for each
# top feature from the SAE's own training text (ETHICS commonsense-morality test split, MIT licence).
# Needs the SAE that results/sae-gemma/run.sh writes to $SAE (runs/sae-gemma/sae). Computed in
# float32 on CPU; about 6 minutes on a busy 2-core CPU (timing probe: attribution 9 s on 8 pairs,
# one patched forward 3.6 s on 8 pairs, cards 0.2 s per text, one thread at load 10).
# Run from the repo root; results.json, cards.json and time.txt are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/features-gemma}
SAE=${SAE:-runs/sae-gemma/sae}
DATA=${DATA:-../shared/data/ethics/cm_test.csv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli features --model gemma-3-270m --device cpu --task greater-than --n 32 --sae "$SAE" \
    --top 10 --n-boot 1000 --data "$DATA" --card-texts 400 --max-length 64 --seed 0 --out "$RUN"
cp "$RUN/results.json" "$RUN/cards.json" "$OUT/"
cat "$OUT/time.txt"
