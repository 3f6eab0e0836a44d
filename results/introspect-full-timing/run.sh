#!/usr/bin/env bash
# Timing of ZIP-RC's full-model mode on gemma-3-270m before any full run: 2 optimiser steps with
# warmup 1 (warmup1.json), then 4 steps with warmup 4 (warmup4.json); accum 2 x batch 4 = 8 samples
# per step, peak lr 1e-5, KL coefficient 10, top-32 teacher; on the
# rollouts of results/introspect-gemma60 (60 arithmetic questions x 8 samples, T = 0.3; recreate
# them with that run.sh). CPU. Run from the repo root; the runs go to runs/introspect/full-timing and
# full-timing-warmup (ignored); their results.json are copied here.
set -euo pipefail
OUT=$(dirname "$0")
RUN=${RUN:-runs/introspect/full-timing}
ROLLOUTS=${ROLLOUTS:-runs/introspect/g60/rollouts}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "warmup 1: wall %e s, user CPU %U s, max RSS %M kB, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  .venv/bin/metalens introspect train --model gemma-3-270m --device cpu --rollouts "$ROLLOUTS" --mode full \
  --steps 2 --warmup 1 --accum 2 --batch-size 4 --lr 1e-5 --kl-coef 10 --out "$RUN"
cp "$RUN/results.json" "$OUT/warmup1.json"
/usr/bin/time -f "warmup 4: wall %e s, user CPU %U s, max RSS %M kB" -a -o "$OUT/time.txt" \
  .venv/bin/metalens introspect train --model gemma-3-270m --device cpu --rollouts "$ROLLOUTS" --mode full \
  --steps 4 --warmup 4 --accum 2 --batch-size 4 --lr 1e-5 --kl-coef 10 --out "$RUN-warmup"
cp "$RUN-warmup/results.json" "$OUT/warmup4.json"
cat "$OUT/time.txt"
