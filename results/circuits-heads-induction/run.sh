#!/usr/bin/env bash
# Per-head scores of gemma-3-270m on the induction task (8 pairs): attribution, EAP-IG (5 steps) and exact
# patching with Spearman vs exact and seconds, the induction detector, and zero-ablating its top-3 heads
# against 3 layer-matched random groups (paired damage over the 8 pairs). Computed in float32.
# Writes results/circuits-heads-induction/results.json (scores tensors included; small).
set -euo pipefail
cd "$(dirname "$0")/../.."
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/metalens heads --model gemma-3-270m --device cpu --task induction \
    --n 8 --out runs/heads-induction
cp runs/heads-induction/results.json results/circuits-heads-induction/results.json
