#!/usr/bin/env bash
# MENTOR (`metalens mentor`) on gemma-3-270m as the subject: the shipped rule tree (20 rules) and 60
# queries (24 build / 12 validation / 24 test), 2 evolution rounds, layer n_layers // 3, strengths 1
# and 2 chosen on validation, 16 new tokens per response and per reflection (the ~15-minute size in
# docs/methods/steering.md). Two assessors:
#   smollm2-assessor: smollm2-135m-instruct writes the reflections, verdicts and proposed rules
#                     (unsteered) and also judges every condition's test responses;
#   checker-assessor: the stated keyword checker as an oracle assessor (its verdicts; the query's
#                     rubric as the proposed rule), to show the machinery when the assessment is right.
# CPU. Run from the repo root; runs go to runs/mentor/gemma-<assessor> (ignored, resumable: a rerun
# continues after the last completed round); each results.json is copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -f "$OUT/time.txt"
for spec in smollm2-assessor:smollm2-135m-instruct checker-assessor:checker; do
  name=${spec%%:*}; assessor=${spec##*:}
  extra=(); [ "$assessor" = checker ] && extra=(--no-eval-assessor)
  run=runs/mentor/gemma-$name
  /usr/bin/time -f "$name: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli mentor --model gemma-3-270m --device cpu --assessor $assessor --rounds 2 \
    --layers 6 --max-new-tokens 16 --reflect-tokens 16 --strengths 1 2 "${extra[@]}" --out "$run"
  cp "$run/results.json" "$OUT/$name.json"
done
cat "$OUT/time.txt"
