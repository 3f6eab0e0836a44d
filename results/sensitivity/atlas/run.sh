#!/usr/bin/env bash
# Sensitivity of the atlas's stated signals (issue #29, pipeline 6) on gemma-3-270m and smollm2-135m-instruct
# (two of results/atlas's three models): a monitor planted in
# verbal confidence (the digit 0-9 read after the model's answer) at strengths 0 (unplanted), 0.25, 0.5, 1,
# 2 and 4 logits of digit-9-minus-digit-0 difference (digits tilted linearly) per SD of its driver, 3 atlas
# seeds each, through `run_atlas` at the published sizes (40 arithmetic items at levels 1-4 + 40 facts,
# probe over every block, 1000 resamples; the probe axis's reportability off: it is outside the family),
# judged in the published 15-test Holm family (results/atlas's other two models join it: --family).
# MODELS= runs some of the models; STRENGTHS= other strengths (a rerun with more reuses finished trials).
# Two drivers, each its own run: correct (the item's true correctness: the instrument's sensitivity) and
# probe (the atlas's held-out correctness probe, the design; on gemma-3-270m that probe's AUROC
# was 0.46, so this curve says what a monitor relaying the probe could show). DRIVERS="correct" runs one.
# Expected time: each trial is one atlas of one model (~200 s CPU at 80 items, from a 24-item timing
# probe); 18 trials per driver, about 1 h CPU per driver, 2 h for both, on 2 cores. Run from the repo
# root; runs go to runs/sens-atlas/DRIVER (gemma) and runs/sens-atlas/MODEL-DRIVER (ignored; rerun to
# resume); results.json and per-run records are copied to DRIVER/ (gemma) and MODEL/DRIVER/ here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DRIVERS=${DRIVERS:-correct probe}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
touch "$OUT/time.txt"
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  for driver in $DRIVERS; do
    sed -i "/^$model, driver $driver,/d" "$OUT/time.txt"  # a rerun replaces its own line, keeps the others
    run=runs/sens-atlas/$model-$driver
    dest=$OUT/$model/$driver
    if [ "$model" = gemma-3-270m ]; then run=runs/sens-atlas/$driver; dest=$OUT/$driver; fi
    /usr/bin/time -f "$model, driver $driver, $(date -u +%FT%TZ): wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli sensitivity atlas --model "$model" --device cpu --signal confidence --driver "$driver" \
      --strengths ${STRENGTHS:-0 0.25 0.5 1 2 4} --seeds 3 --family results/atlas --out "$run"
    mkdir -p "$dest"
    cp "$run/results.json" "$dest/results.json"
    rm -rf "$dest/runs" && cp -r "$run/runs" "$dest/runs"
  done
done
# results.json here indexes every sweep; on top: gemma's driver correct (the instrument's own sensitivity)
$PY tools/sensitivity_index.py "$OUT" correct
cat "$OUT/time.txt"
