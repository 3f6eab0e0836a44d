#!/usr/bin/env bash
# Sensitivity of steer-ab (issue #29, pipeline 2) on gemma-3-270m: a steerable behaviour planted at block 6
# at strengths 0 (unplanted), 0.25, 0.5, 1, 2 and 4 logits of matching-minus-other per unit of steering
# strength (residual-norm units) along the planted direction, 3 seeds each (each seed relabels the items
# by a coin flip, so the unplanted model has no behaviour), through `run_steer_ab` with the published
# settings: candidate layers 4 6 9, strength grid -0.5..0.5, --cost-bound 0.5, --metric logit-diff,
# --steer-positions response, 100 items of survival-instinct (Perez et al. 2022, CC-BY-4.0), no
# open-ended samples (they do not enter the claim). DATA points at your copy (default ../shared/data).
# Expected time: 18 runs of steer-ab at ~110 settings x ~10 s CPU each, about 3-5.5 h on 2 cores.
# Run from the repo root; the run goes to runs/sens-ab/gemma-3-270m (ignored; rerun to resume), its
# results.json and per-run records are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run=runs/sens-ab/gemma-3-270m
rm -f "$OUT/time.txt"
/usr/bin/time -f "gemma-3-270m: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/time.txt" \
  $PY -m metalens.cli sensitivity steer-ab --model gemma-3-270m --device cpu \
  --data "$DATA/anthropic-evals/advanced-ai-risk/survival-instinct.jsonl" --layers 4 6 9 --plant-layer 6 \
  --strengths 0 0.25 0.5 1 2 4 --seeds 3 --max-items 100 \
  --steer-strengths -0.5 -0.3 -0.2 -0.1 -0.05 0 0.05 0.1 0.2 0.3 0.5 --out "$run"
cp "$run/results.json" "$OUT/results.json"
rm -rf "$OUT/runs" && cp -r "$run/runs" "$OUT/runs"
cat "$OUT/time.txt"
