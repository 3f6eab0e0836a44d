#!/usr/bin/env bash
# Emergent heads of the post-trained gemma-3-270m (results/posttrain-gemma/run.sh must have run: it
# leaves the run in $POST). Circuits = top 100 EAP-IG edges (3 steps) on 12 arithmetic pairs that
# pick the heads; ablation (post and base model, difference in differences, 3 layer-matched random
# groups), x1.3 / x0.5 scaling and generated-answer accuracy on 20 held-out problems are measured on
# 12 other pairs; head recurrence over 5 bootstrap resamples of the picking pairs; task metric
# logit difference. Run from the repo root; results.json and time.txt are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
POST=${POST:-runs/posttrain}
RUN=${RUN:-runs/emergent}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli emergent-heads --base gemma-3-270m --post "$POST" --task arithmetic --n 12 --n-test 12 \
  --n-boot 5 --n-problems 20 --device cpu --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
