#!/usr/bin/env bash
# The full default neurofeedback run (`NeurofeedbackConfig()` defaults: 400 balanced `moral`
# sentences split by group, layer 9, PC1/2/4/8/32/128 + LR, N up to 32, 8 draws, implicit and
# explicit control) on gemma-3-270m, CPU. Run from the repo root. The full run goes to $RUN
# (ignored by git); results.json and time.txt are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/probes/gemma-full}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli neurofeedback --model gemma-3-270m --layers 9 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
