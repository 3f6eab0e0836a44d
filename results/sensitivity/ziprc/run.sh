#!/usr/bin/env bash
# Sensitivity of the ZIP-RC reward head (issue #29, pipeline 5) on gemma-3-270m: the head trained
# (mode head, L-BFGS 100, length bins fitted, 30 % of operand units held out, seed 0) and evaluated
# (3 shuffled-label heads, no verbal baseline) exactly as results/ziprc-gemma published it, on copies
# of its rollout store whose correctness labels have reliability 0, 0.1, 0.2, 0.3, 0.5, 0.75 and 1
# (1 - 2 x flip share; 1 is the published run, 0 coin-flip labels, the null), 5 seeds each (which
# samples flip). Detected: the published rule (the 95 % unit-bootstrap intervals of AUROC - 0.5 and of
# the gap over shuffled-label heads, all held-out positions, both above 0).
# Stages: `published` (default: the 80-question store of results/ziprc-gemma, levels 1-4) and
# `regime2` (its 48-question store, levels 0-1, the one the sampler comparison used). A stage whose
# store is missing samples it first, with the published settings (seed 0; on other hardware the
# draws can differ from the published ones); STORE= points at an existing store instead.
# Expected time (2 cores, from results/ziprc-gemma/time.txt): a store, if it must be sampled, ~35 min
# (80 x 8) or ~25 min (48 x 8); one pass over the store's hidden states ~5 min; then 35 trials of five
# head fits, a probe and the bootstraps on the cached states, ~0.5-1.5 min each: about 25-60 min per
# stage with the store present, 1-1.5 h without. Resumable: a rerun skips finished trials.
# Run from the repo root: `bash results/sensitivity/ziprc/run.sh [published|regime2 ...]`; output goes to
# runs/sens-ziprc/<stage> (ignored); results.json and the per-trial records are copied here
# (regime2's as regime2-results.json and regime2-runs/).
set -euo pipefail
PY=${PY:-.venv/bin/python}
HERE=$(dirname "$0")
M=${MODEL:-gemma-3-270m}  # MODEL=random:tiny-gemma3 smoke-tests the commands
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
SAMPLING=(--temperature 1.0 --min-p 0.1 --batch-questions 8 --max-new-tokens 48 --n-samples 8)
timed() {  # timed NAME COMMAND...: run, append wall/CPU time and the load average to time.txt
  local name=$1; shift
  /usr/bin/time -f "$(date -u +%FT%TZ) $name: wall %e s, user CPU %U s, max RSS %M kB, load at start $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$HERE/time.txt" "$@"
}
complete() { [ -f "$1/manifest.json" ] && grep -q '"complete": true' "$1/manifest.json"; }
sweep() {  # sweep NAME STORE N_TASKS LEVELS...
  local name=$1 store=$2 n=$3; shift 3
  complete "$store" || timed "$name: rollouts ($n x 8)" $PY -m metalens.cli introspect rollouts --model "$M" \
    --device cpu --task arithmetic --n-tasks "$n" --levels "$@" "${SAMPLING[@]}" --out "$store"
  timed "$name: sensitivity" $PY -m metalens.cli sensitivity ziprc --model "$M" --device cpu --rollouts "$store" \
    --length-bins fitted --steps 100 --test-fraction 0.3 --n-shuffles 3 \
    --strengths 0 0.1 0.2 0.3 0.5 0.75 1 --seeds 5 --out "runs/sens-ziprc/$name"
}
stage_published() {
  sweep published "${STORE:-runs/ziprc/head/rollouts}" 80 1 2 3 4
  cp runs/sens-ziprc/published/results.json "$HERE/results.json"
  rm -rf "$HERE/runs" && cp -r runs/sens-ziprc/published/runs "$HERE/runs"
}
stage_regime2() {
  sweep regime2 "${STORE:-runs/ziprc/regime2/head/rollouts}" 48 0 1
  cp runs/sens-ziprc/regime2/results.json "$HERE/regime2-results.json"
  rm -rf "$HERE/regime2-runs" && cp -r runs/sens-ziprc/regime2/runs "$HERE/regime2-runs"
}
for stage in "${@:-published}"; do "stage_$stage"; done
cat "$HERE/time.txt"
