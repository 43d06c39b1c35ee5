# Two commands set everything up on a fresh machine (Python 3.11 and make are all they need):
#   make book   create the environment, execute every chapter (PROFILE=cpu by default), build the HTML
#   make test   create the environment and run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
# torch is installed first, as a CPU build, on machines without an NVIDIA GPU, so that nothing later pulls a
# multi-GB CUDA build. Point PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index where PyPI's default is CUDA.
TORCH_CPU ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# The real data are read from a local mirror when there is one (here and in CI: ../shared/data).
VOLBIAS_DATA_MIRROR ?= $(abspath $(CURDIR)/../shared/data)
VOLBIAS_RUNS_DIR ?= $(CURDIR)/runs/$(PROFILE)
# Chapters run on the project's own kernel even where a user-level "python3" kernel exists.
JUPYTER_PREFER_ENV_PATH := 1
export VOLBIAS_DATA_MIRROR VOLBIAS_RUNS_DIR JUPYTER_PREFER_ENV_PATH

.PHONY: help env test book check-chapters benchmarks clean

help:
	@echo "make book  [PROFILE=smoke|cpu|gpu]  execute every chapter and build _build/html/index.html"
	@echo "make test                          run the test suite"

$(STAMP): environment.yml pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install "$(TORCH_CPU)"; fi
	awk '/^ *- pip:/{inpip=1; next} inpip && /^ *- /{sub(/^ *- /, ""); print; next} inpip && !/^ *#/{inpip=0}' \
		environment.yml > $(VENV)/requirements.txt
	$(PY) -m pip install -r $(VENV)/requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

check-chapters: $(STAMP)
	$(PY) -m volbias.bookbuild check chapters

book: $(STAMP)
	$(PY) -m volbias.bookbuild build --profile $(PROFILE)

benchmarks: $(STAMP)
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf _build _staging
