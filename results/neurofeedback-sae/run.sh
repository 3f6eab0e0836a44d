#!/usr/bin/env bash
# Neurofeedback on 16 SAE feature axes of gemma-3-270m (strict protocol), beside PC1 and LR as reference
# axes: the default `moral` set (400 balanced sentences split by group), block 6 -- the block the SAE of
# results/sae-gemma/run.sh reads (blocks.6.hook_resid_post) -- and the 8 most active + 8 most variable
# features, chosen on the fit split only. All 18 axes share the reporting tests (own shuffle, other-axes
# learner, words-only learner) and one Holm family; implicit control on all 18, explicit on LR and PC1.
# Needs the SAE first: `bash results/sae-gemma/run.sh` writes it to runs/sae-gemma/sae. Run from the repo
# root. The full run goes to $RUN (ignored by git); results.json, cards.json and time.txt are copied beside this script.
# Measured 2026-12-07: 2,253 s wall, 1,102 s user CPU on the shared 2-core machine (time.txt).
# SENSITIVITY=1 adds the planted-reporter detection curve on the first selected feature (hours; README.md).
# STEER=1 adds the steering-by-feature run on the ocean rule beside the vector, same prompts and checker
# (results/steering-feature/run.sh with the same SAE; about 10 minutes).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/neurofeedback-sae}
SAE=${SAE:-runs/sae-gemma/sae}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ ! -f "$SAE/cfg.json" ]; then
  echo "No SAE at $SAE: run 'bash results/sae-gemma/run.sh' first (or set SAE=DIR to a blocks.6.hook_resid_post SAE)." >&2
  exit 1
fi
/usr/bin/time -f "neurofeedback: wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli neurofeedback --model gemma-3-270m --device cpu --layers 6 --pcs 1 \
    --sae "$SAE" --sae-features active:8,variable:8 --seed 0 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cp "$RUN/cards.json" "$OUT/cards.json"  # the feature cards (also in $RUN/report.html)
if [ "${SENSITIVITY:-0}" = 1 ]; then
  # The same 18-axis family with the first selected feature pinned by index (each seed draws its own split,
  # so an unpinned feature could drop out), a reporter of it planted at 0, 1 and 2 logits per SD, 2 seeds.
  feature=$($PY -c "import json; print(next(a for a in json.load(open('$RUN/results.json'))['axes']['names'] if a.startswith('F'))[1:])")
  /usr/bin/time -f "sensitivity F$feature: wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli sensitivity neurofeedback --model gemma-3-270m --device cpu --layers 6 --pcs 1 \
      --sae "$SAE" --sae-features "$feature,active:7,variable:8" --axis "F$feature" --strengths 0 1 2 --seeds 2 \
      --out "$RUN-sensitivity"
  cp "$RUN-sensitivity/results.json" "$OUT/sensitivity.json"
fi
if [ "${STEER:-0}" = 1 ]; then
  SAE="$SAE" bash "$OUT/../steering-feature/run.sh"
fi
cat "$OUT/time.txt"
