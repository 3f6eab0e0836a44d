#!/usr/bin/env bash
# Sensitivity of neurofeedback control (issue #29, pipeline 2) on gemma-3-270m and smollm2-135m-instruct (the
# models of results/neurofeedback-ethics, at its blocks 9 and 15): a controller of PC1
# planted in the 2x2 flip control stage at strengths 0 (unplanted), 0.001 and 0.01 SDs
# of the PC1 projection per measured token (toward the side the design asks for; 2x2 effect = 2 x
# strength SDs; a one-trial probe put the test's MDE near 0.001), 3 seeds each, through `run_neurofeedback` under the paper protocol (the only design
# that calls an axis controllable), --quick data sizes (`moral`, 120 sentences, PC1, PC8, LR at the
# model's block), implicit control of every axis at the published paper runs' control sizes (8 trials of 16
# examples; results/neurofeedback-ethics), reporting at 2 draws and no explicit control (neither
# touches implicit control). CPU-sized. MODELS= runs some of the models. Run from the repo root; each
# run goes to runs/sens-nf-control/MODEL (ignored; rerun to resume); results.json and per-run records
# are copied here (gemma) and to MODEL/ (others).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
declare -A LAYER=([gemma-3-270m]=9 [smollm2-135m-instruct]=15)
[ -z "${MODELS:-}" ] && rm -f "$OUT/time.txt"
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  layer=${LAYER[$model]:?"no block for $model: add it to LAYER in $0"}
  run=runs/sens-nf-control/$model
  dest=$OUT
  [ "$model" = gemma-3-270m ] || dest=$OUT/$model
  /usr/bin/time -f "$(date -u +%F) $model: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli sensitivity neurofeedback --stage control --protocol paper --model "$model" --device cpu \
    --quick --layers "$layer" --axis PC1 --implicit-trials 8 --control-examples 16 \
    --strengths 0 0.001 0.01 --seeds 3 --out "$run"
  mkdir -p "$dest"
  cp "$run/results.json" "$dest/results.json"
  rm -rf "$dest/runs" && cp -r "$run/runs" "$dest/runs"
done
cat "$OUT/time.txt"
