#!/usr/bin/env bash
# `make demo`'s job (`metalens demo` on the embedded gemma-3-270m, CPU): every area's quick demo on
# one loaded model. Run from the repo root. Reports go to $RUN (ignored by git); results.json
# (each area's summary and seconds) and time.txt are copied beside this script.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/demo}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, max RSS %M kB, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli demo --model gemma-3-270m --device cpu --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
