# Each target creates (or reuses) the local virtual environment .venv and installs the project.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-quick lint base-model

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
