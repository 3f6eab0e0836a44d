#!/usr/bin/env bash
# The four benches on the embedded gemma-3-270m (CPU unless a GPU is present). Each prints paired
# ratios (ABBA order, median of per-repeat ratios, bootstrap 95 % interval) against a baseline
# measured in the same run, and writes its numbers beside this script. Run from the repo root.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
$PY bench/capture.py --repeats 6 --json "$OUT/capture.json"
$PY bench/steer.py --batch 4 --new 16 --repeats 6 --json "$OUT/steer.json"
$PY bench/circuits.py --task arithmetic --n 4 --repeats 3 --json "$OUT/circuits.json"
$PY bench/introspect.py --tokens 32 --repeats 8 --json "$OUT/introspect.json"
$PY bench/overhead.py --repeats 30 --json "$OUT/overhead.json"   # tiny model: fixed costs (issue #30)
$PY bench/overhead.py --repeats 30 --json "$OUT/overhead-repeat.json"   # a second run at once: the run-to-run spread
$PY bench/overhead.py --repeats 30 --calls 10 --json "$OUT/overhead-loop.json"   # 10 calls per timing: per call in a loop
