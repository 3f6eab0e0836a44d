#!/usr/bin/env bash
# MENTOR (`metalens mentor`) on gemma-3-270m as the subject, smollm2-135m-instruct as the assessor
# (it writes the reflections, the verdicts and the proposed rules, unsteered): the shipped rule tree
# (20 rules) and 60 queries (24 build / 12 validation / 24 test), 2 evolution rounds, layer
# n_layers // 3, strengths 1 and 2 chosen on validation, 16 new tokens per response and per
# reflection (the ~15-minute size in steering/README.md), the assessor also judging every
# condition's test responses. CPU. Run from the repo root; the run goes to runs/mentor/gemma
# (ignored, resumable: a rerun continues after the last completed round); results.json is copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/mentor/gemma}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" -o "$OUT/time.txt" \
  $PY -m metalens.cli mentor --model gemma-3-270m --device cpu --assessor smollm2-135m-instruct --rounds 2 \
  --max-new-tokens 16 --reflect-tokens 16 --strengths 1 2 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
