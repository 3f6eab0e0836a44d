#!/usr/bin/env bash
# Circuits on the community's tasks, from the public EAP-IG data files (Hanna et al.; MIT): IOI
# (ioi_llama.csv; names read from the text, the file's token ids ignored) and greater-than
# (greater_than_data.csv; digit form for digit tokenizers, see docs/methods/circuits.md), the first 16
# usable pairs of each, on gemma-3-270m and smollm2-135m-instruct, CPU, float32. Per head:
# attribution, EAP-IG (5 steps) and exact patching with Spearman vs exact; per method the MIB
# faithfulness curve of its top-k % edge circuits (run, not scored), CPR and CMD.
# DATA points at your copy of the data (default ../shared/data, beside the repo). Run from the repo
# root; the runs go to runs/community/<model>-<task> (ignored), each results.json is copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -f "$OUT/time.txt"
for model in gemma-3-270m smollm2-135m-instruct; do
  for task in ioi greater-than; do
    file=$DATA/eap-ig/ioi_llama.csv; [ "$task" = greater-than ] && file=$DATA/eap-ig/greater_than_data.csv
    run=runs/community/$model-$task
    /usr/bin/time -f "$model $task: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli heads --model $model --device cpu --task "$file" --n 16 --no-detect --faithfulness --out "$run"
    cp "$run/results.json" "$OUT/$model-$task.json"
  done
done
cat "$OUT/time.txt"
