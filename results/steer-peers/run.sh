#!/usr/bin/env bash
# metalens, steering-vectors 0.12 and repeng 0.4 side by side (bench/steer_peers.py): gemma-3-270m,
# block 6's output, the shipped `ocean` rule's 16 contrastive pairs; its 40 held-out prompts split
# (seed 0) into 16 validation prompts, on which each library's strength is chosen (its grid, then
# doubled while still the best and at most 20 % degenerate, 3 doublings at most), and 16 test prompts
# scored once; 24 greedy new tokens, the rule's keyword checker; paired differences metalens minus each
# peer over test prompts; speed in ABBA rounds. Each library has its own strength scale (repeng's unit
# vectors need coefficients of hundreds against gemma-3's residual norm of ~3,300 at block 6). CPU.
# Run from the repo root (OMP_NUM_THREADS=1 on a shared machine); `python bench/steer_peers.py --setup`
# once makes .venv-peers (ignored).
set -euo pipefail
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -x .venv-peers/bin/python ] || .venv/bin/python bench/steer_peers.py --setup
/usr/bin/time -f "wall %e s, user CPU %U s, system CPU %S s, OMP_NUM_THREADS=$OMP_NUM_THREADS, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" -o "$OUT/time.txt" \
  .venv-peers/bin/python bench/steer_peers.py --model gemma-3-270m --layer 6 --rule ocean --n-val 16 --n-test 16 \
  --seed 0 --new 24 --metalens 1 2 4 --steering-vectors 1 2 4 --repeng 128 512 2048 --max-degenerate 0.2 \
  --max-extensions 3 --repeats 6 --speed-prompts 2 --json "$OUT/results.json"
cat "$OUT/time.txt"
