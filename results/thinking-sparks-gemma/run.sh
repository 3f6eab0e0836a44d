#!/usr/bin/env bash
# Thinking Sparks end to end on gemma-3-270m, two post-training methods, LoRA (r=8) on all 18 blocks:
#   sft:  120 steps x batch 4 on worked arithmetic solutions, a checkpoint every 10 steps;
#   grpo: 32 steps, each of 4 problems x a group of 4 completions (24 new tokens, T 1.0) rewarded by
#         the arithmetic grader, KL 0.04 to the base, a checkpoint every 4 steps;
# held-out greedy accuracy on 24 problems (levels 1-3, seed 1000) at each checkpoint. Then, per
# method, emergent heads base vs post-trained on pairs made from the two models' own solution
# openings (--pairs own, KL metric), pick / test pairs disjoint, ablation in both models with
# layer-matched random controls, bootstrap recurrence, accuracy under ablation on 20 held-out
# problems, and the cohort view over 6 checkpoints. CPU, resumable (rerun the same command).
# Run from the repo root; runs go to runs/posttrain-<method> (ignored); results.json files are
# copied here as <method>-posttrain.json and <method>-emergent.json.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -f "$OUT/time.txt"
for method in sft grpo; do
  run=runs/posttrain-$method
  extra=(--steps 120 --save-every 10)
  [ "$method" = grpo ] && extra=(--steps 32 --save-every 4 --group-size 4 --sample-tokens 24 --kl-coef 0.04
                                 --temperature 1.0)
  /usr/bin/time -f "$method posttrain: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli posttrain --model gemma-3-270m --device cpu --method $method --train-blocks all "${extra[@]}" \
    --out "$run"
  cp "$run/results.json" "$OUT/$method-posttrain.json"
  /usr/bin/time -f "$method emergent-heads: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
    -a -o "$OUT/time.txt" \
    $PY -m metalens.cli emergent-heads --base gemma-3-270m --run "$run" --task arithmetic --pairs own --n 12 \
    --n-test 12 --n-boot 5 --n-problems 20 --max-checkpoints 6 --device cpu --out "$run-emergent"
  cp "$run-emergent/results.json" "$OUT/$method-emergent.json"
done
cat "$OUT/time.txt"
