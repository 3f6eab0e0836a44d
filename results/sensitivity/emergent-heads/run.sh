#!/usr/bin/env bash
# Sensitivity of emergent-heads (issue #29, pipeline 4) on gemma-3-270m. A "post-trained" copy of the model in
# which two heads (drawn per seed outside the base model's circuit on the picking pairs) write each arithmetic
# prompt's answer at their last token, at strengths 0 (unplanted), 0.5, 1, 2, 4 and 8 mean head-output norms,
# 3 seeds each; then the control: the same answer signal written by those heads' blocks' MLPs instead, at 1, 4
# and 8 mean MLP-output norms, 3 seeds. Both run `run_emergent_heads` with the published settings (arithmetic,
# 12 picking + 12 test pairs, top 100 EAP-IG edges, 3 steps, 3 layer-matched random groups, up to 10 emergent
# heads ablated together) and judge it by its two checks at alpha 0.05 (damage above the random groups' mean,
# difference in differences > 0). Left out, as not part of the verdict: bootstrap recurrence and generated-answer
# accuracy (no posttrain held-out split exists for a planted copy).
# Expected time: 27 trials of 2 EAP-IG circuits each plus one base circuit per seed and sweep (60 circuits); a timing
# probe (1 thread, machine load ~10) built one circuit in 110 s unplanted and 235 s planted: about 1.5-3 h on 2 cores.
# Run from the repo root; runs go to runs/sens-emergent/{heads,mlp} (ignored; rerun to resume); the heads sweep's
# results.json and runs/ are copied here, the control's into mlp-control/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
common=(--model gemma-3-270m --device cpu --task arithmetic --n 12 --n-test 12 --n-edges 100 --ig-steps 3
        --n-random 3 --max-emergent 10 --seeds 3)
rm -f "$OUT/time.txt"
for plant in heads mlp; do
  if [ "$plant" = heads ]; then strengths=(0 0.5 1 2 4 8); else strengths=(1 4 8); fi
  run=runs/sens-emergent/$plant
  /usr/bin/time -f "gemma-3-270m --plant $plant: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli sensitivity emergent-heads "${common[@]}" --plant "$plant" --strengths "${strengths[@]}" \
    --out "$run"
  dest=$OUT; [ "$plant" = mlp ] && dest=$OUT/mlp-control  # the headline curve here, the control beside it
  mkdir -p "$dest"
  cp "$run/results.json" "$dest/results.json"
  rm -rf "$dest/runs" && cp -r "$run/runs" "$dest/runs"
done
cat "$OUT/time.txt"
