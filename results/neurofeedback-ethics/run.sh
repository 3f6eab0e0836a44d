#!/usr/bin/env bash
# Neurofeedback on ETHICS commonsense (Hendrycks et al. 2021; the test split's one-sentence rows;
# label 1 = wrong), both protocols, gemma-3-270m (layer 9, base model: plain User/Assistant text
# under the paper protocol) and smollm2-135m-instruct (layer 15, chat template). CPU-sized:
#   strict: metalens' default design on 400 balanced sentences (PC1/2/4/8/32/128 + LR, N up to 32,
#           8 draws, implicit control on every axis, explicit control on LR and PC1);
#   paper:  the paper's framing, label rule and 2x2 flip control on 400 sentences, PC1/PC8 + LR,
#           N up to 64 in one prompt, 6 draws, flip control on LR and PC1 (8 trials, 16 examples),
#           no explicit control (the paper's own sizes, `NeurofeedbackConfig.paper()`, need a GPU).
# DATA points at your copy of the data (default ../shared/data). Run from the repo root; runs go to
# runs/nf-ethics/<model>-<protocol> (ignored); each results.json is copied here.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=$(dirname "$0")
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# MODELS= (gemma-3-270m, smollm2-135m-instruct) and PROTOCOLS= (strict, paper) run some of the runs
# (time.txt is then appended to, not restarted), e.g. PROTOCOLS=paper bash results/neurofeedback-ethics/run.sh
[ -z "${MODELS:-}${PROTOCOLS:-}" ] && rm -f "$OUT/time.txt"
declare -A LAYER=([gemma-3-270m]=9 [smollm2-135m-instruct]=15)
for model in ${MODELS:-gemma-3-270m smollm2-135m-instruct}; do
  layer=${LAYER[$model]:?"MODELS: $model has no layer here; use gemma-3-270m or smollm2-135m-instruct"}
  for protocol in ${PROTOCOLS:-strict paper}; do
    case $protocol in strict|paper) ;; *) echo "PROTOCOLS: $protocol is not strict or paper" >&2; exit 2;; esac
    extra=(--max-sentences 400)
    [ "$protocol" = paper ] && extra+=(--pcs 1,8 --n-values 0,2,4,8,16,32,64 --draws 6 --implicit-targets LR,PC1
                                       --implicit-trials 8 --control-examples 16 --explicit-targets "")
    run=runs/nf-ethics/$model-$protocol
    /usr/bin/time -f "$model $protocol: wall %e s, user CPU %U s, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
      -a -o "$OUT/time.txt" \
      $PY -m metalens.cli neurofeedback --model $model --device cpu --layers $layer --data "$DATA/ethics/cm_test.csv" \
      --protocol $protocol "${extra[@]}" --out "$run"
    cp "$run/results.json" "$OUT/$model-$protocol.json"
  done
done
cat "$OUT/time.txt"
