#!/usr/bin/env bash
# Sensitivity of neurofeedback control (issue #29, pipeline 2) on gemma-3-270m: a controller of PC1
# planted in the 2x2 flip control stage at strengths 0 (unplanted), 0.001 and 0.01 SDs
# of the PC1 projection per measured token (toward the side the design asks for; 2x2 effect = 2 x
# strength SDs; a one-trial probe put the test's MDE near 0.001), 3 seeds each, through `run_neurofeedback` under the paper protocol (the only design
# that calls an axis controllable), --quick data sizes (`moral`, 120 sentences, PC1, PC8, LR at layer
# 9), implicit control of every axis at the published paper runs' control sizes (8 trials of 16
# examples; results/neurofeedback-ethics), reporting at 2 draws and no explicit control (neither
# touches implicit control). CPU-sized. Run from the repo root; the run goes to
# runs/sens-nf-control/gemma-3-270m (ignored; rerun to resume), its results.json and per-run records
# are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run=runs/sens-nf-control/gemma-3-270m
rm -f "$OUT/time.txt"
/usr/bin/time -f "$(date -u +%F) gemma-3-270m: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/time.txt" \
  $PY -m metalens.cli sensitivity neurofeedback --stage control --protocol paper --model gemma-3-270m --device cpu \
  --quick --layers 9 --axis PC1 --implicit-trials 8 --control-examples 16 \
  --strengths 0 0.001 0.01 --seeds 3 --out "$run"
cp "$run/results.json" "$OUT/results.json"
rm -rf "$OUT/runs" && cp -r "$run/runs" "$OUT/runs"
cat "$OUT/time.txt"
