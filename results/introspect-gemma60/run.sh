#!/usr/bin/env bash
# The introspection head on gemma-3-270m, 60 arithmetic questions (levels 1-2) x 8 samples at T = 0.3:
# train (rollouts + head), held-out and 5-fold CV evaluation, and the sampler replay with 5-fold heads.
# Run from the repository root; the run's full output goes to runs/introspect/g60 (ignored), the small
# results.json files are copied here. CPU, idle 2-core machine.
set -euo pipefail
OUT=${OUT:-runs/introspect/g60}
HERE=results/introspect-gemma60
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ML=".venv/bin/metalens"
$ML introspect train --model gemma-3-270m --device cpu --levels 1 2 --n-tasks 60 --n-samples 8 \
    --max-new-tokens 24 --temperature 0.3 --out "$OUT"
$ML introspect eval --model gemma-3-270m --device cpu --head "$OUT/head" --out "$OUT/eval" --cv 5 --no-verbal
$ML introspect sample --model gemma-3-270m --device cpu --head "$OUT/head" --out "$OUT/sample" --cv 5
cp "$OUT/results.json" "$HERE/train.json"
cp "$OUT/eval/results.json" "$HERE/eval.json"
cp "$OUT/sample/results.json" "$HERE/sample.json"
