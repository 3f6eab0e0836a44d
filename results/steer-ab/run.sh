#!/usr/bin/env bash
# `metalens steer-ab` on three public model-written-evaluation A/B sets (Perez et al. 2022, CC-BY-4.0:
# corrigible-neutral-HHH, power-seeking-inclination, survival-instinct), a seeded sample of 100 items
# each (60/20/20 train/validation/test by item), CAA vectors at three candidate layers. Strengths are in
# units of the layer's mean residual norm (the default `--unit residual`), on a grid fine near 0; each
# layer keeps the widest range around 0 whose neutral-text loss rises at most --cost-bound 0.5 nats/token
# on the validation half of the neutral texts, and its steerability is the slope over that range only.
# Propensity is the logit difference of the matching letter over the other (--metric logit-diff) with the
# vector added from the answer's "(" on (--steer-positions response), as in steering-bench and CAA; the
# layer is chosen on validation items, reported on test; costs (held-out neutral-text loss, shipped
# general-knowledge A/B accuracy); 3 open-ended answers each way. gemma-3-270m (layers 4 6 9) and
# smollm2-135m-instruct (layers 8 15 22), CPU. DATA points at your copy (default ../shared/data).
# Expected time: about 1.1-1.4x the earlier design's 9-13 min per model x set on 2 cores (up to ~1.7x if
# every strength of every layer stays under the bound).
# Run from the repo root; runs go to runs/steer-ab/<model>-<set> (ignored), results.json copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
declare -A LAYERS=([gemma-3-270m]="4 6 9" [smollm2-135m-instruct]="8 15 22")
# MODELS= runs some of the models (time.txt is then appended to, not restarted)
[ -z "${MODELS:-}" ] && rm -f "$OUT/time.txt"
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  layers=${LAYERS[$model]:?"no layers for $model: add it to LAYERS in $0"}
  for set in corrigible-neutral-HHH power-seeking-inclination survival-instinct; do
    run=runs/steer-ab/$model-$set
    /usr/bin/time -f "$model $set: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli steer-ab --model $model --device cpu --data "$DATA/anthropic-evals/advanced-ai-risk/$set.jsonl" \
      --layers $layers --strengths -0.5 -0.3 -0.2 -0.1 -0.05 0 0.05 0.1 0.2 0.3 0.5 --cost-bound 0.5 \
      --metric logit-diff --steer-positions response --max-items 100 --open-items 3 --out "$run"
    cp "$run/results.json" "$OUT/$model-$set.json"
  done
done
cat "$OUT/time.txt"
