#!/usr/bin/env bash
# Sensitivity of steer-ab (issue #29, pipeline 3) on gemma-3-270m: a steerable behaviour planted at block 6
# at strengths STRENGTHS (default 0 = unplanted, 1 and 4) logits of matching-minus-other per unit of steering
# strength (residual-norm units) along the planted direction, 3 seeds each (each seed relabels the items
# by a coin flip, so the unplanted model has no behaviour), through `run_steer_ab` with the published
# settings: candidate layers 4 6 9, strength grid -0.5..0.5, --cost-bound 0.5, --metric logit-diff,
# --steer-positions response, 100 items of survival-instinct (Perez et al. 2022, CC-BY-4.0), no
# open-ended samples (they do not enter the claim). DATA points at your copy (default ../shared/data).
# Expected time: each trial is one steer-ab run without open-ended answers (the published runs took 470-545 s
# CPU with them), so about 500 s CPU a trial, 9 trials at the default strengths. Run from the repo root; the run
# goes to runs/sens-ab/gemma-3-270m (ignored; rerun to resume, or with more STRENGTHS, e.g. "0 0.5 1 2 4", to
# extend: finished trials are reused); its results.json and per-run records are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run=runs/sens-ab/gemma-3-270m
# appended: an extension's line adds its own trials' time to the first run's
/usr/bin/time -f "gemma-3-270m, strengths ${STRENGTHS:-0 1 4}, $(date -u +%FT%TZ): wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/time.txt" \
  $PY -m metalens.cli sensitivity steer-ab --model gemma-3-270m --device cpu \
  --data "$DATA/anthropic-evals/advanced-ai-risk/survival-instinct.jsonl" --layers 4 6 9 --plant-layer 6 \
  --strengths ${STRENGTHS:-0 1 4} --seeds 3 --max-items 100 \
  --steer-strengths -0.5 -0.3 -0.2 -0.1 -0.05 0 0.05 0.1 0.2 0.3 0.5 --out "$run"
cp "$run/results.json" "$OUT/results.json"
rm -rf "$OUT/runs" && cp -r "$run/runs" "$OUT/runs"
cat "$OUT/time.txt"
