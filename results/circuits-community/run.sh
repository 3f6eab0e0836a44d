#!/usr/bin/env bash
# Circuits on the community's tasks, from the public EAP-IG data files (Hanna et al.; MIT): IOI
# (ioi_llama.csv; names read from the text, the file's token ids ignored) and greater-than
# (greater_than_data.csv; digit form for digit tokenizers, see docs/methods/circuits.md), the first 48
# usable pairs of each, on gemma-3-270m and smollm2-135m-instruct, CPU, float32. The pairs are split
# as MIB splits discovery from evaluation: --eval-n 16 pairs (drawn with --seed 0) serve only the
# faithfulness curves, the other 32 every score (the curves keep 16 pairs, as before; the circuits
# are now found on 32 other ones). Per head: attribution, EAP-IG (5 steps) and exact patching with
# Spearman vs exact; per method the faithfulness curves of its top-k % edge circuits (run, not
# scored): MIB's CPR (signed ranking) and CMD (|score| ranking) with q/k/v counted as 3 edges and
# int(pct * n) kept, bootstrap intervals over the 16 evaluation pairs and paired differences to
# EAP-IG; the earlier metalens convention (cpr, cmd) beside them.
# DATA points at your copy of the data (default ../shared/data, beside the repo). Run from the repo
# root; the runs go to runs/community/<model>-<task> (ignored), each results.json is copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# MODELS= / TASKS= run some of the models / tasks (time.txt is then appended to, not restarted); two
# invocations with TASKS=ioi and TASKS=greater-than and OMP_NUM_THREADS=1 use two cores side by side
[ -z "${MODELS:-}" ] && [ -z "${TASKS:-}" ] && rm -f "$OUT/time.txt"
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  for task in ${TASKS:-ioi greater-than}; do
    file=$DATA/eap-ig/ioi_llama.csv; [ "$task" = greater-than ] && file=$DATA/eap-ig/greater_than_data.csv
    run=runs/community/$model-$task
    /usr/bin/time -f "$(date +%F) $model $task: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli heads --model $model --device cpu --task "$file" --n 48 --eval-n 16 --seed 0 \
        --no-detect --faithfulness --out "$run"
    cp "$run/results.json" "$OUT/$model-$task.json"
  done
done
cat "$OUT/time.txt"
