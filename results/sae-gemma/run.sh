#!/usr/bin/env bash
# A small TopK SAE on gemma-3-270m's residual stream after block 6 (`metalens sae train`), trained on
# English text from the ETHICS commonsense-morality test split (Hendrycks et al. 2021, MIT licence; the
# CSV's `input` column), then scored on held-out texts of the same file: variance explained, L0, dead
# share, and CE loss recovered against the zero- and mean-ablation baselines. Sized for ~10 minutes on a
# busy 2-core CPU. Run from the repo root; DATA defaults to the shared copy beside the project
# (without it, drop --data: the verb then trains on Python's own help texts, PSF licence).
# The checkpoint and the SAE go to $RUN (ignored by git); results.json and time.txt are copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
RUN=${RUN:-runs/sae-gemma}
DATA=${DATA:-../shared/data/ethics/cm_test.csv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
/usr/bin/time -f "wall %e s, user CPU %U s, system %S s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
  -o "$OUT/time.txt" \
  $PY -m metalens.cli sae train --model gemma-3-270m --device cpu --site blocks.6.hook_resid_post \
    --data "$DATA" --tokens 8000 --width 1024 --arch topk --k 32 --steps 200 --train-batch-size 512 \
    --lr 2e-3 --init-b-dec mean --max-length 64 --eval-share 0.1 --eval-texts 16 --seed 0 --out "$RUN"
cp "$RUN/results.json" "$OUT/results.json"
cat "$OUT/time.txt"
