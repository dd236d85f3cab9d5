# Each target creates (or reuses) the local virtual environment .venv and installs the project.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-quick lint base-model bench

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -e ".[dev]"
	touch $(INSTALLED)

demo: $(INSTALLED)  ## the offline demo on the embedded data
	$(VENV)/bin/tfx-transfer demo

test: $(INSTALLED)  ## every test, the slow ones included (what CI runs)
	$(VENV)/bin/python -m pytest

test-quick: $(INSTALLED)  ## the fast tests only
	$(VENV)/bin/python -m pytest -m "not slow"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check tfx_transfer tests scripts examples

base-model: $(INSTALLED)  ## retrain the shipped base model (~4 min on 2 cores)
	$(VENV)/bin/python scripts/train_base_model.py

# Each benchmark's stdout (tables and ratios) is also written to benchmarks/out/<name>.txt;
# bash with pipefail so that a failing script stops the run despite the tee.
BENCH := TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/python
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c

bench: $(INSTALLED)  ## run every benchmark in turn; outputs also in benchmarks/out/
	mkdir -p benchmarks/out
	$(BENCH) benchmarks/training.py | tee benchmarks/out/training.txt
	$(BENCH) benchmarks/input_pipeline.py | tee benchmarks/out/input_pipeline.txt
	$(BENCH) benchmarks/backbones.py | tee benchmarks/out/backbones.txt
	$(BENCH) benchmarks/memory.py | tee benchmarks/out/memory.txt
	$(BENCH) benchmarks/expansion.py | tee benchmarks/out/expansion.txt
	$(BENCH) benchmarks/distribution.py | tee benchmarks/out/distribution.txt
