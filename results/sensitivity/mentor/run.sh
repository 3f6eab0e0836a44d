#!/usr/bin/env bash
# Sensitivity of MENTOR (issue #29, pipeline 7) on gemma-3-270m: a rule class where steering is known to work
# (the topic rule "Always talk about the ocean": `metalens steer` moves its adherence from 0.00 to 0.69) run
# through `run_mentor` as published -- layer 6, top-2 retrieval, 2 self-evolution rounds with the keyword
# checker as the oracle assessor, 16 new tokens, exact McNemar against no_rules with Holm over its 5
# comparisons, alpha 0.05 -- at MENTOR steering strengths 0 (unsteered), 0.5, 1, 1.5, 2 and 3 (multiples of
# the retrieved rules' vector sum; each run's strength grid is that one value), 3 split seeds each. The
# queries are the 40 shipped held-out prompts (16 build / 8 validation / 16 test); a reply violates when it
# holds none of the ocean rule's keywords.
# Expected time: 18 runs of about 170 greedy 16-token generations each (~45 % of the published checker-assessor
# MENTOR run's ~300: 560 s wall, 283 s user CPU), so ~250-320 s wall per run, about 1.3-1.8 h on 2 cores.
# Run from the repo root; the run goes to runs/sens-mentor/gemma-3-270m (ignored; rerun to resume), its
# results.json and per-run records are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
run=runs/sens-mentor/gemma-3-270m
rm -f "$OUT/time.txt"
/usr/bin/time -f "gemma-3-270m ($(date -u +%FT%TZ)): wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/time.txt" \
  $PY -m metalens.cli sensitivity mentor --model gemma-3-270m --device cpu --rule ocean --layers 6 \
  --strengths 0 0.5 1 1.5 2 3 --seeds 3 --rounds 2 --top-k 2 --max-new-tokens 16 --out "$run"
cp "$run/results.json" "$OUT/results.json"
rm -rf "$OUT/runs" && cp -r "$run/runs" "$OUT/runs"
cat "$OUT/time.txt"

# Extension (run 2026-12-07 after the grid above found nothing): strengths 5 and 10, where the fluency cost
# reaches 0.2-0.6 and then 2.5-4.2 nats/token, into its own run (the sweep refuses other strengths in one --out).
strong=runs/sens-mentor/gemma-3-270m-strong
mkdir -p "$OUT/strong"
rm -f "$OUT/strong/time.txt"
/usr/bin/time -f "gemma-3-270m strengths 5 10 ($(date -u +%FT%TZ)): wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -a -o "$OUT/strong/time.txt" \
  $PY -m metalens.cli sensitivity mentor --model gemma-3-270m --device cpu --rule ocean --layers 6 \
  --strengths 5 10 --seeds 3 --rounds 2 --top-k 2 --max-new-tokens 16 --out "$strong"
cp "$strong/results.json" "$OUT/strong/results.json"
rm -rf "$OUT/strong/runs" && cp -r "$strong/runs" "$OUT/strong/runs"
cat "$OUT/strong/time.txt"
