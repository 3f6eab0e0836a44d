#!/usr/bin/env bash
# Post-training gemma-3-270m on arithmetic (`metalens posttrain` defaults: LoRA r=8 on the last 6
# blocks, 30 steps x batch 4, lr 3e-3, checkpoints every 5 steps), greedy accuracy before/after on 24
# held-out problems (levels 1-3, seed 1000) with Wilson intervals and the paired change. CPU.
# Run from the repo root. Checkpoints and the merged final model (~1 GB) go to $RUN (ignored by git);
# results.json and time.txt are copied beside this script. results/emergent-heads-gemma reads $RUN.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/posttrain}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli posttrain --model gemma-3-270m --device cpu --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
