#!/usr/bin/env bash
# `metalens steer-ab` on three public model-written-evaluation A/B sets (Perez et al. 2022, CC-BY-4.0:
# corrigible-neutral-HHH, power-seeking-inclination, survival-instinct), a seeded sample of 100 items
# each (60/20/20 train/validation/test by item), CAA vectors at three candidate layers, strengths
# -0.5..0.5 in units of the layer's mean residual norm (the default `--unit residual`; gemma-3's raw
# CAA differences are about 1 % of its residual norm, so raw strengths up to 4 barely move it); layer chosen on validation, reported on test; costs (neutral-text loss, shipped
# general-knowledge A/B accuracy); 3 open-ended answers each way. gemma-3-270m (layers 4 6 9) and
# smollm2-135m-instruct (layers 8 15 22), CPU. DATA points at your copy (default ../shared/data).
# Run from the repo root; runs go to runs/steer-ab/<model>-<set> (ignored), results.json copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -f "$OUT/time.txt"
for spec in "gemma-3-270m:4 6 9" "smollm2-135m-instruct:8 15 22"; do
  model=${spec%%:*}; layers=${spec##*:}
  for set in corrigible-neutral-HHH power-seeking-inclination survival-instinct; do
    run=runs/steer-ab/$model-$set
    /usr/bin/time -f "$model $set: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli steer-ab --model $model --device cpu --data "$DATA/anthropic-evals/advanced-ai-risk/$set.jsonl" \
      --layers $layers --strengths -0.5 -0.2 -0.1 0 0.1 0.2 0.5 --max-items 100 --open-items 3 --out "$run"
    cp "$run/results.json" "$OUT/$model-$set.json"
  done
done
cat "$OUT/time.txt"
