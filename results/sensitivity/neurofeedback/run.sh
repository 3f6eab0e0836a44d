#!/usr/bin/env bash
# Sensitivity of neurofeedback reporting (issue #29, pipeline 1) on gemma-3-270m: a reporter of PC1
# planted at strengths 0 (unplanted), 0.5 and 2 logits of label difference per SD of the PC1
# projection, 3 seeds each, through `run_neurofeedback` (strict protocol, --quick sizes with 6 draws
# as in the issue's own check; control stages at their smallest: they do not touch reporting).
# CPU-sized. Run from the repo root; the run goes to runs/sens-nf/gemma-3-270m (ignored; rerun to
# resume), its results.json and per-run records are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run=runs/sens-nf/gemma-3-270m
rm -f "$OUT/time.txt"
/usr/bin/time -f "gemma-3-270m: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/time.txt" \
  $PY -m metalens.cli sensitivity neurofeedback --model gemma-3-270m --device cpu --quick --draws 6 --axis PC1 \
  --strengths 0 0.5 2 4 8 --seeds 3 --out "$run"
cp "$run/results.json" "$OUT/results.json"
rm -rf "$OUT/runs" && cp -r "$run/runs" "$OUT/runs"
cat "$OUT/time.txt"
