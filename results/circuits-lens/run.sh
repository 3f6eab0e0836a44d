#!/usr/bin/env bash
# Logit lens of gemma-3-270m and smollm2-135m-instruct on a factual prompt, target " Paris": each
# block's residual decoded through the final norm and unembedding. CPU. Run from the repo root;
# results.json (tokens, top token and probability per layer x position, target probability) is
# copied here as <model>.json; report.html stays in runs/lens/<model> (ignored).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
for model in gemma-3-270m smollm2-135m-instruct; do
  $PY -m metalens.cli lens --model $model --device cpu --prompt "The capital of France is the city of" \
      --target " Paris" --out runs/lens/$model
  cp runs/lens/$model/results.json "$OUT/$model.json"
done
