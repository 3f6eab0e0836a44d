#!/usr/bin/env bash
# Sensitivity of neurofeedback reporting (issue #29, pipeline 1) on gemma-3-270m and smollm2-135m-instruct
# (the models of results/neurofeedback-ethics; each at its default, middle block: 9 and 15): a reporter of PC1
# planted at strengths 0 (unplanted), 0.5 and 2 logits of label difference per SD of the PC1
# projection, 3 seeds each, through `run_neurofeedback` (strict protocol, --quick sizes with 6 draws
# as in the issue's own check; control stages at their smallest: they do not touch reporting).
# CPU-sized. MODELS= runs some of the models. Run from the repo root; each run goes to runs/sens-nf/MODEL
# (ignored; rerun to resume); results.json and per-run records are copied here (gemma) and to MODEL/ (others).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -z "${MODELS:-}" ] && rm -f "$OUT/time.txt"
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  run=runs/sens-nf/$model
  dest=$OUT
  [ "$model" = gemma-3-270m ] || dest=$OUT/$model
  /usr/bin/time -f "$(date -u +%F) $model: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli sensitivity neurofeedback --model "$model" --device cpu --quick --draws 6 --axis PC1 \
    --strengths 0 0.5 2 4 8 --seeds 3 --out "$run"
  mkdir -p "$dest"
  cp "$run/results.json" "$dest/results.json"
  rm -rf "$dest/runs" && cp -r "$run/runs" "$dest/runs"
done
cat "$OUT/time.txt"
