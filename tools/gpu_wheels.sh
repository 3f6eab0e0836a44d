#!/usr/bin/env bash
# Wheels for `make gpu-check` on a lent GPU machine (Python 3.12, x86-64, no package index): the
# packages metalens needs that the machine's image lacks (compared with .library KINDS.md's list),
# at the versions this .venv holds, plus the metalens wheel itself, into .whl/ (ignored by git).
# Run from the repo root: bash tools/gpu_wheels.sh [PY]. Checks that .whl/ plus the working tree
# stay under the 64 MiB that travels. wandb and transformers-stream-generator (transformer-lens
# requirements; the latter has no wheel) are left out: they are
# imported only by transformer-lens' training utilities, never by metalens.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=.whl
LIMIT_MIB=48   # of the 64 MiB that travel, leaving room for the working tree
PKGS="transformer-lens nnsight gguf plotly datasets dill multiprocess greenlet pydantic pydantic-core
annotated-types typing-inspection zstandard beartype typeguard fancy-einsum
websocket-client"
rm -rf "$OUT" && mkdir -p "$OUT"
specs=()
for name in $PKGS; do
  specs+=("$name==$($PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 \
         manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
  plat+=(--platform "$p")
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" --platform any -d "$OUT" "${specs[@]}"
$PY -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" .
total=$(du -sm "$OUT" | cut -f1)
tree=$(git ls-files -co --exclude-standard | $PY -c "import os, sys; print(sum(os.path.getsize(p) for p in sys.stdin.read().split(chr(10)) if os.path.isfile(p)) >> 20)")
echo "wheels: $(ls "$OUT" | wc -l) files, ${total} MiB; working tree ${tree} MiB (limit 64 MiB together)"
if [ "$total" -gt "$LIMIT_MIB" ] || [ $((total + tree)) -ge 64 ]; then
  echo "too large to travel" >&2
  exit 1
fi
