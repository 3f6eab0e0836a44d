#!/usr/bin/env bash
# The medium neurofeedback run that probes/README.md cites: gemma-3-270m, layer 9, 200 balanced
# `moral` sentences (split by group into fit and pool), PC1/2/4/8/32 + LR, N up to 16, 6 draws,
# 6 implicit-control trials per axis, 2 explicit-control trials on LR. Run from the repo root.
# The full run (report.html, axes/) goes to $RUN (ignored by git); results.json (every number behind
# every figure) and time.txt (wall and CPU seconds) are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/probes/gemma-medium}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli neurofeedback --model gemma-3-270m --layer 9 --max-sentences 200 --pcs 1,2,4,8,32 \
  --n-values 0,2,4,8,16 --draws 6 --implicit-trials 6 --control-examples 8 --explicit-targets LR \
  --explicit-trials 2 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
