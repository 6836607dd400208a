# Two commands do everything on a fresh machine:
#   make demo   - set up, generate the embedded synthetic set, build shards, train, evaluate
#   make test   - set up and run the tests
SHELL := /bin/bash
PY ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# Tested torch + DALI per machine. CPU machines: the CPU build of torch (a local wheel where the
# machine has one) and DALI's CUDA 12 wheel, whose CPU operators run without a driver. Machines with
# an NVIDIA driver: picked by the CUDA version the driver supports (`nvidia-smi`'s header):
#   CUDA >= 13.0 (driver >= 580): torch 2.11.0 (PyPI wheel built for CUDA 13) + nvidia-dali-cuda130
#   CUDA 12.x                   : torch 2.10.0 (PyPI wheel built for CUDA 12.8) + nvidia-dali-cuda120
# and setup fails, saying why, when a GPU is present but torch cannot use it (never a silent CPU
# fall-back). Override with `make setup TORCH=... DALI=...`.
TORCH_CPU ?= torch==2.13.0
TORCH_CU13 ?= torch==2.11.0
TORCH_CU12 ?= torch==2.10.0
DALI_VERSION ?= 2.4.0

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
	@set -e; \
	if nvidia-smi -L >/dev/null 2>&1; then \
	  cuda=$$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\.\([0-9]*\).*/\1/p' | head -1); \
	  case "$$cuda" in \
	    1[3-9]|[2-9][0-9]) torch="$(TORCH_CU13)"; dali="nvidia-dali-cuda130==$(DALI_VERSION)";; \
	    12) torch="$(TORCH_CU12)"; dali="nvidia-dali-cuda120==$(DALI_VERSION)";; \
	    *) echo "setup: the NVIDIA driver supports CUDA '$$cuda' (nvidia-smi); torch needs 12.x or newer: update the driver" >&2; exit 1;; \
	  esac; \
	  torch=$${TORCH:-$$torch}; dali=$${DALI:-$$dali}; \
	  echo "setup: NVIDIA driver with CUDA $$cuda: $$torch, $$dali"; \
	  $(BIN)/pip install -q "$$torch" "$$dali"; \
	  $(BIN)/python -c "import sys, torch; ok = torch.cuda.is_available(); \
	    print(f'setup: torch {torch.__version__} (CUDA {torch.version.cuda}) sees', torch.cuda.device_count() if ok else 0, 'GPU(s)'); \
	    sys.exit(0 if ok else 'setup: a GPU is present but torch ' + torch.__version__ + ' cannot use it (driver too old for CUDA ' + str(torch.version.cuda) + '?); pass TORCH=<a torch build for your driver>')"; \
	else \
	  torch=$${TORCH:-$(TORCH_CPU)}; dali=$${DALI:-nvidia-dali-cuda120==$(DALI_VERSION)}; \
	  echo "setup: no GPU: $$torch, $$dali (CPU operators)"; $(BIN)/pip install -q "$$torch" "$$dali"; \
	fi
	$(BIN)/pip install -q -e ".[test,detect,cluster]"
	@# [detect]'s mediapipe pulls opencv-contrib-python, whose GUI cv2 (needs libGL, X11) overwrites the
	@# headless cv2's files; mediapipe runs on the headless build, so put that back alone.
	@if $(BIN)/pip show -q opencv-contrib-python >/dev/null 2>&1; then \
	  cv=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))"); \
	  $(BIN)/pip uninstall -q -y opencv-contrib-python; \
	  $(BIN)/pip install -q --force-reinstall --no-deps "opencv-python-headless==$$cv"; \
	fi
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

# One command on a GPU machine, under 8 minutes on one H100/H200 (benchmarks/gpu.py): environment,
# pytest -m gpu, the host-sync check, DALI / training / evaluation images/s -> gpu_report.json + a table.
# ARGS passes options (--shards DIR, --checkpoint CK, --parts a,b; --device cpu --quick on a CPU).
.PHONY: gpu-check
gpu-check: setup
	$(BIN)/python -m benchmarks.gpu --out $(CURDIR)/gpu_report.json $(ARGS)

clean:
	rm -rf $(VENV) data runs
