# Two commands do everything on a fresh machine:
#   make demo   - set up, generate the embedded synthetic set, build shards, train, evaluate
#   make test   - set up and run the tests
SHELL := /bin/bash
PY ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# CPU machines get this torch (a CPU build where the local wheel cache has one); machines with an
# NVIDIA driver get the default (CUDA) build. Override with `make setup TORCH=...`.
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch

DATA ?=
SOURCE ?= interhand
OUT ?= $(CURDIR)/data/shards/$(SOURCE)
SYNTH ?= $(CURDIR)/data/synth
SIZE ?= small

.PHONY: setup test demo shards synth bench clean

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if nvidia-smi -L >/dev/null 2>&1; then \
	  echo "setup: NVIDIA GPU found, installing $(TORCH_GPU)"; $(BIN)/pip install -q "$(TORCH_GPU)"; \
	else \
	  echo "setup: no GPU, installing $(TORCH_CPU)"; $(BIN)/pip install -q "$(TORCH_CPU)"; \
	fi
	@cuda=$$($(BIN)/python -c "import torch; print((torch.version.cuda or '12').split('.')[0])"); \
	  dali=nvidia-dali-cuda$${cuda}0; echo "setup: installing $$dali"; $(BIN)/pip install -q "$$dali"
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

test: setup
	$(BIN)/python -m pytest -q tests

synth: setup
	$(BIN)/python -m shards.synth --out $(SYNTH)/$(SOURCE) --size $(SIZE) --format $(SOURCE)

# make shards [DATA=<data set root>] [SOURCE=interhand|rhd|stb] [OUT=<dir or fsspec URL>]
# Without DATA, the embedded synthetic set of that format is generated first (once: a finished set
# leaves a .complete marker, as `make demo` does; delete the folder to regenerate).
shards: setup
	@if [ -z "$(DATA)" ]; then \
	  root=$(SYNTH)/$(SOURCE); \
	  if [ ! -f $$root/.complete ]; then \
	    $(BIN)/python -m shards.synth --out $$root --size $(SIZE) --format $(SOURCE) && touch $$root/.complete || exit 1; \
	  else echo "shards: using the synthetic set in $$root (.complete)"; fi; \
	else root=$(DATA); fi; \
	$(BIN)/python -m shards --source $(SOURCE) --root $$root --out $(OUT)

# Synthetic data -> shards -> train the demo preset -> evaluate, with baselines and pictures.
demo: setup
	$(BIN)/python -m train.demo $(ARGS)

# Benchmarks (figures in the README). BENCH_SHARDS: a shard root with a train split (default: the demo's).
BENCH_SHARDS ?= $(CURDIR)/data/shards/interhand
bench: setup
	$(BIN)/python -m benchmarks.loss
	$(BIN)/python -m benchmarks.eval
	$(BIN)/python -m benchmarks.pipeline --shards $(BENCH_SHARDS) --split train
	$(BIN)/python -m benchmarks.train --shards $(BENCH_SHARDS)
	$(BIN)/python -m benchmarks.shards --annotations 200000

clean:
	rm -rf $(VENV) data runs
