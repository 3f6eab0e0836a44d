#!/usr/bin/env bash
# Ocean steering on gemma-3-270m (CPU): layer 6, strengths 1 and 2 swept on the first 8 of 24 shipped
# prompts, reported on the other 16 (no MENTOR rounds). Writes results/steering-ocean/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p runs/steering
head -24 steering/data/prompts_heldout.txt > runs/steering/prompts24.txt
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/metalens steer --model gemma-3-270m --device cpu --rule ocean \
    --prompts runs/steering/prompts24.txt --layers 6 --strengths 1 2 --max-new-tokens 16 \
    --n-select 8 --out runs/steering/ocean
cp runs/steering/ocean/results.json results/steering-ocean/results.json
