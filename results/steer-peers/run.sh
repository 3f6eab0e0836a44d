#!/usr/bin/env bash
# metalens, steering-vectors 0.12 and repeng 0.4 side by side (bench/steer_peers.py): gemma-3-270m,
# block 6's output, the shipped `ocean` rule's 16 contrastive pairs, 16 held-out prompts, 24 greedy
# new tokens, the rule's keyword checker; each library sweeps its own strength scale (repeng's unit
# vectors need coefficients of hundreds against gemma-3's residual norm of ~3,300 at block 6). CPU.
# Run from the repo root; `python bench/steer_peers.py --setup` once makes .venv-peers (ignored).
set -euo pipefail
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -x .venv-peers/bin/python ] || .venv/bin/python bench/steer_peers.py --setup
/usr/bin/time -f "wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" -o "$OUT/time.txt" \
  .venv-peers/bin/python bench/steer_peers.py --model gemma-3-270m --layer 6 --rule ocean --n-prompts 16 --new 24 \
  --metalens 0.5 1 2 4 --steering-vectors 0.5 1 2 4 --repeng 8 32 128 512 --json "$OUT/results.json"
cat "$OUT/time.txt"
