# Two commands do all the set-up on a fresh machine:
#   make run   - venv, install, dataset, then the main job (Table 6 at the local scale)
#   make test  - venv, install, dataset, then the whole test suite
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FMNIST  ?= /usr/share/datasets/fashion-mnist
export RAY_USAGE_STATS_ENABLED := 0
export MPLBACKEND := Agg
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor

.PHONY: run test test-fast venv data bench clean help

help:
	@echo "make run   - set up and run 'python -m harness run paper_table6 --until-decisive --budget 30m' (local scale)"
	@echo "make test  - set up and run the whole test suite"
	@echo "make bench - run the benchmarks in bench/"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision pinned exactly so pip takes the wheels on local disk where they lie.
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e ".[ray,test,models]"
	touch $(STAMP)

venv: $(STAMP)

data: $(STAMP)
	@$(BIN)/python -m harness data ensure --apt || { \
	  echo "Fashion-MNIST is missing. Install Debian's 'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist)"; \
	  echo "or run 'python -m harness data download --data-root DIR' on a machine with internet."; exit 2; }

run: data
	$(BIN)/python -m harness run paper_table6 --until-decisive --budget 30m

test: data
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900

test-fast: data
	$(BIN)/python -m pytest -q -m "not slow"

bench: data
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .cache .benchmarks
