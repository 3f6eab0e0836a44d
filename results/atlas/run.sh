#!/usr/bin/env bash
# The metacognitive atlas (`metalens atlas`, default sizes: 40 two-choice arithmetic items at levels
# 1-4 plus 40 shipped two-choice facts; confidence, KEEP/WITHDRAW and BET read from option tokens;
# correctness probe with nested grouped 5-fold CV over every block; the probe axis's reportability)
# of gemma-3-270m, smollm2-135m-instruct and the post-trained gemma from results/posttrain-gemma
# ($POST, default runs/posttrain/final; made by results/posttrain-gemma/run.sh when missing) in one atlas.
# Arithmetic items are drawn apart from the post-training problems (atlas.json: training_overlap);
# every AUROC comes with its Holm-adjusted p over the models x signals family (multiplicity). CPU.
# Run from the repo root; atlas.html and per-model files go to $RUN (ignored); atlas.json, items.jsonl
# (every per-item reading) and time.txt are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/atlas}
POST=${POST:-runs/posttrain/final}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ ! -f "$POST/metalens-checkpoint.json" ]; then  # the post-trained model is made by its own experiment
  [ "$(basename "$POST")" = final ] || { echo "run.sh: $POST is missing; set POST to a posttrain run's final/ folder" >&2; exit 2; }
  PY=$PY RUN=$(dirname "$POST") bash "$OUT/../posttrain-gemma/run.sh"
fi
/usr/bin/time -f "wall %e s, user CPU %U s, max RSS %M kB, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli atlas --model gemma-3-270m --model smollm2-135m-instruct --model "$POST" --device cpu --out "$RUN"
cp "$RUN/atlas.json" "$RUN/items.jsonl" "$OUT/"
cat "$OUT/time.txt"
