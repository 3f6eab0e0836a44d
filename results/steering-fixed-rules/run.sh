#!/usr/bin/env bash
# Space, food and cheerful rules on gemma-3-270m (CPU) at the layer and strength that the ocean run
# selected on its own selection prompts (results/steering-ocean/run.sh must have run first: it leaves
# runs/steering/ocean), scored on ocean's 16 test prompts. Copies the small JSON results here.
set -euo pipefail
cd "$(dirname "$0")/../.."
test -f runs/steering/ocean/results.json || bash results/steering-ocean/run.sh
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/python results/steering-fixed-rules/reproduce.py space food cheerful
for rule in space food cheerful; do cp "runs/steering/${rule}_fixed.json" "results/steering-fixed-rules/${rule}.json"; done
