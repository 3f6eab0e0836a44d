#!/usr/bin/env bash
# Sensitivity of the ZIP-RC samplers to head quality (issue #29, pipeline 5, second half) on gemma-3-270m's
# regime2 store (results/ziprc-gemma, 2026-12-07: 48 arithmetic questions, levels 0-1, 8 samples each).
# The published replay (`introspect sample --cv 5 --every 4`: every question read by a head trained without
# its fold, sampler.pareto's token costs, beta 0) is re-run with the readings replaced by an oracle head of
# reliability q = 0, 0.1, ..., 1 (AUROC 0.5 + q / 2; metalens.introspect.sampling.oracle), 20 seeds each
# (each re-orders every question's stored samples and draws which ones the oracle misreads). Detected: the
# sampler called better than majority voting at matched tokens: more wins than losses and the exact sign
# test below 0.05 after Holm over the replay's 23 comparisons. The trained head's own pools go through the
# same replay (results.json: settings.trained_head).
# Stages: `prune` (default; the prune-only sampler, the head's length reading), `bestofn` (best-of-N by the
# reading), `truelength` (prune-only with the true tokens left as the length reading).
# Needs the regime2 train run (runs/ziprc/regime2/head, TRAIN= another): if it is missing, it is made first
# with results/ziprc-gemma's regime2 train command, which reuses runs/ziprc/regime2/head/rollouts when that
# store is finished and samples it otherwise.
# Expected time (one core, from the code path, no timing probe on the real model): with the train run
# present, per stage ~1 min (model load, cached hidden states, 5 fold-head fits) + 241 replays (220 trials,
# the trained head in 21 orders) at ~1.5-2 s each (23 paired comparisons with 2000 bootstrap resamples
# each; timed on synthetic 48 x 8 pools) = ~7-9 min, so ~25 min for the three stages; making the train run
# first adds ~5-10 min from the store (one pass over its hidden states, the head fits) or ~30 min if the
# store must be sampled (results/ziprc-gemma/time.txt: 1692 s). Resumable: a rerun skips finished trials.
# Run from the repo root: `bash results/sensitivity/ziprc-sampler/run.sh [prune|bestofn|truelength ...]`;
# output goes to runs/sens-ziprc-sampler/<stage> (ignored), results.json is copied here as <stage>.json.
set -euo pipefail
PY=${PY:-.venv/bin/python}
HERE=${HERE:-$(dirname "$0")}  # HERE=/tmp/x for a smoke test (time.txt and the jsons go there)
R=${R:-runs/sens-ziprc-sampler}
M=${MODEL:-gemma-3-270m}  # MODEL=random:tiny-gemma3 with TRAIN= a planted run smoke-tests the commands
TRAIN=${TRAIN:-runs/ziprc/regime2/head}
SEEDS=${SEEDS:-20}
STRENGTHS=${STRENGTHS:-0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
timed() {  # timed NAME COMMAND...: run, append wall/CPU time and the load average to time.txt
  local name=$1; shift
  /usr/bin/time -f "$(date -u +%FT%TZ) $name: wall %e s, user CPU %U s, max RSS %M kB, load at start $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$HERE/time.txt" "$@"
}
train_run() {  # results/ziprc-gemma/run.sh's regime2 train command (48 questions x 8, levels 0 1)
  [ -f "$TRAIN/results.json" ] || timed "regime2 train head" $PY -m metalens.cli introspect train --model "$M" \
    --device cpu --task arithmetic --n-tasks 48 --temperature 1.0 --min-p 0.1 --batch-questions 8 \
    --max-new-tokens 48 --n-samples 8 --levels 0 1 --length-bins fitted --out "$TRAIN"
}
sweep() {  # sweep STAGE ARGS...
  local stage=$1; shift
  train_run
  # shellcheck disable=SC2086
  timed "$stage: sensitivity" $PY -m metalens.cli sensitivity ziprc-sampler --model "$M" --device cpu \
    --train "$TRAIN" --cv 5 --every 4 --beta 0 --strengths $STRENGTHS --seeds "$SEEDS" \
    --out "$R/$stage" "$@"
  cp "$R/$stage/results.json" "$HERE/$stage.json"
}
stage_prune() { sweep prune --sampler prune-only --length head; }
stage_bestofn() { sweep bestofn --sampler best-of-n --length head; }
stage_truelength() { sweep truelength --sampler prune-only --length true; }
for stage in "${@:-prune}"; do "stage_$stage"; done
# results.json here indexes every stage; on top: prune (the published sampler), once it has run
[ ! -f "$HERE/prune.json" ] || $PY tools/sensitivity_index.py "$HERE" prune
cat "$HERE/time.txt"
