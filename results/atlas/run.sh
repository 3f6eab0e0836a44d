#!/usr/bin/env bash
# The metacognitive atlas (`metalens atlas`, default sizes: 40 two-choice arithmetic items at levels
# 1-4 plus 40 shipped two-choice facts; confidence, KEEP/WITHDRAW and BET read from option tokens;
# correctness probe with nested grouped 5-fold CV over every block; the probe axis's reportability)
# of gemma-3-270m, smollm2-135m-instruct and the post-trained gemma from results/posttrain-gemma
# ($POST, default runs/posttrain/final) in one atlas. CPU. Run from the repo root; atlas.html and
# per-model files go to $RUN (ignored), atlas.json and time.txt are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/atlas}
POST=${POST:-runs/posttrain/final}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, max RSS %M kB, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli atlas --model gemma-3-270m --model smollm2-135m-instruct --model "$POST" --device cpu --out "$RUN"
cp "$RUN/atlas.json" "$OUT/atlas.json"
cat "$OUT/time.txt"
