#!/usr/bin/env bash
# Sensitivity of steer-ab (issue #29, pipeline 3) on gemma-3-270m and smollm2-135m-instruct (the two models of
# results/steer-ab): a steerable behaviour planted at the middle candidate block (gemma 6, smollm2 15)
# at strengths STRENGTHS (default 0 = unplanted, 1 and 4) logits of matching-minus-other per unit of steering
# strength (residual-norm units) along the planted direction, 3 seeds each (each seed relabels the items
# by a coin flip, so the unplanted model has no behaviour), through `run_steer_ab` with the published
# settings: candidate layers gemma 4 6 9 / smollm2 8 15 22, strength grid -0.5..0.5, --cost-bound 0.5, --metric logit-diff,
# --steer-positions response, 100 items of survival-instinct (Perez et al. 2022, CC-BY-4.0), no
# open-ended samples (they do not enter the claim). DATA points at your copy (default ../shared/data).
# Two planted directions, each its own run (DIRECTIONS="activations" runs one): activations (a draw from
# the block's activations' covariance: the design) and random (a uniform random unit vector: gemma's first
# run, which gemma cannot be steered along within the cost bound; see direction_cost.py). MODELS= runs some
# of the models; smollm2 runs the design's direction only (DIRECTIONS does not apply to it).
# Expected time: each trial is one steer-ab run without open-ended answers, 300-660 s wall with one thread;
# 9 trials per direction. Strength 0 plants nothing, so its trials do not depend on the direction.
# Run from the repo root; runs go to runs/sens-ab/MODEL-DIRECTION (ignored; rerun to resume, or with more
# STRENGTHS, e.g. "0 0.5 1 2 4", to extend: finished trials are reused); results.json and per-run records
# are copied here to DIRECTION/ (gemma) and smollm2-135m-instruct/ (smollm2).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
declare -A LAYERS=([gemma-3-270m]="4 6 9" [smollm2-135m-instruct]="8 15 22")
declare -A PLANT=([gemma-3-270m]=6 [smollm2-135m-instruct]=15)
touch "$OUT/time.txt"  # appended: an extension's line adds its own trials' time to the first run's
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  layers=${LAYERS[$model]:?"no layers for $model: add it to LAYERS in $0"}
  directions=${DIRECTIONS:-activations random}
  [ "$model" = gemma-3-270m ] || directions=activations
  for direction in $directions; do
    run=runs/sens-ab/$model-$direction
    dest=$OUT/$direction
    [ "$model" = gemma-3-270m ] || dest=$OUT/$model
    /usr/bin/time -f "$model, --plant-direction $direction, strengths ${STRENGTHS:-0 1 4}, $(date -u +%FT%TZ): wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli sensitivity steer-ab --model "$model" --device cpu \
      --data "$DATA/anthropic-evals/advanced-ai-risk/survival-instinct.jsonl" --layers $layers --plant-layer "${PLANT[$model]}" \
      --plant-direction "$direction" --strengths ${STRENGTHS:-0 1 4} --seeds 3 --max-items 100 \
      --steer-strengths -0.5 -0.3 -0.2 -0.1 -0.05 0 0.05 0.1 0.2 0.3 0.5 --out "$run"
    mkdir -p "$dest"
    cp "$run/results.json" "$dest/results.json"
    rm -rf "$dest/runs" && cp -r "$run/runs" "$dest/runs"
  done
done
# results.json here indexes every sweep; on top: gemma's activations direction (the design)
$PY tools/sensitivity_index.py "$OUT" activations
cat "$OUT/time.txt"
