#!/usr/bin/env bash
# Per-head scores of gemma-3-270m on the arithmetic task (8 pairs): attribution, EAP-IG (5 steps) and
# exact patching with Spearman vs exact and seconds. Computed in float32 on CPU. Run from the repo
# root; results.json (scores included; small) and time.txt are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/heads-arith}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli heads --model gemma-3-270m --device cpu --task arithmetic --n 8 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
