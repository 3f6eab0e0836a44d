#!/usr/bin/env bash
# ZIP-RC's regime on gemma-3-270m (issue #20): rollouts at T = 1.0, min_p 0.1, arithmetic levels 1-4
# (80 questions x 8 samples, up to 48 tokens, length bins fitted to the lengths seen) to train on, word
# problems levels 1-4 (40 x 8) to test transfer; heads in mode head, head on value labels, lora and
# full on the same split; held-out and transfer evaluation; the utility sampler against majority
# voting and best-of-N. Run from the repository root: `bash results/ziprc-gemma/run.sh [STAGE ...]`,
# stages rollouts, heads, lora, full, eval, sample (default: all, in that order; each resumes or
# skips what is done). Outputs go to runs/ziprc (ignored); the small results.json files are copied
# here, wall/CPU times appended to time.txt. CPU, 2 cores.
set -euo pipefail
HERE=results/ziprc-gemma
R=${R:-runs/ziprc}
M=gemma-3-270m
ML=".venv/bin/metalens"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SAMPLING=(--temperature 1.0 --min-p 0.1 --batch-questions 8 --max-new-tokens 48 --n-samples 8 --levels 1 2 3 4)
timed() {  # timed NAME COMMAND...: run, append wall/CPU/RSS and the load average to time.txt
  local name=$1; shift
  /usr/bin/time -f "$name: wall %e s, user CPU %U s, max RSS %M kB, load at start $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$HERE/time.txt" "$@"
}
stage_rollouts() {
  [ -f "$R/head/results.json" ] || timed "train head (arithmetic rollouts)" \
    $ML introspect train --model $M --device cpu --task arithmetic --n-tasks 80 "${SAMPLING[@]}" \
    --length-bins fitted --out "$R/head"
  cp "$R/head/results.json" "$HERE/head-train.json"
  [ -f "$R/words/manifest.json" ] && grep -q '"complete": true' "$R/words/manifest.json" || timed "words rollouts" \
    $ML introspect rollouts --model $M --device cpu --task words --n-tasks 40 "${SAMPLING[@]}" --out "$R/words"
}
for stage in "${@:-rollouts heads lora full eval sample}"; do for s in $stage; do "stage_$s"; done; done
