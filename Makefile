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
# make book trains the chapters' runs this many at a time (one worker process per run, each on its share of the
# cores); the tests keep the default of one.
WORKERS ?= 2
# Chapters run on the project's own kernel even where a user-level "python3" kernel exists.
JUPYTER_PREFER_ENV_PATH := 1
export VOLBIAS_DATA_MIRROR VOLBIAS_RUNS_DIR JUPYTER_PREFER_ENV_PATH

.PHONY: help env test book results-cpu check-browser check-chapters benchmarks clean sync-metadata check-metadata package release

help:
	@echo "make book  [PROFILE=smoke|cpu|gpu]  execute every chapter and build _build/html/index.html"
	@echo "make test                          run the test suite"
	@echo "make results-cpu                   train (or finish) the stored cpu reference result set in data/results/cpu-reference"
	@echo "make check-browser                 check every page of _build/html in headless Chromium (screenshots: _build/screenshots)"
	@echo "make release [PROFILE=...]         build the book and pack dist/volbias-<version>-book-<profile>.zip"
	@echo "make package                       build the wheel and sdist into dist/ and check them with twine"
	@echo "make sync-metadata                 copy version and addresses from pyproject.toml into the files that repeat them"

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
	VOLBIAS_WORKERS=$(WORKERS) $(PY) -m volbias.bookbuild build --profile $(PROFILE)

# The stored cpu reference result set (hours on two cores; resumable: run it again to finish an interrupted sitting).
results-cpu: $(STAMP)
	$(PY) -m volbias.analysis.reference_set make --workers $(WORKERS) $(if $(FIRST),--first $(FIRST))

# Every page of the built book in headless Chromium (the Debian package `chromium`): layout, images, math, code.
check-browser: $(STAMP)
	test -f _build/html/index.html || { echo "no built book in _build/html: run make book first" >&2; exit 1; }
	VOLBIAS_BOOK_HTML=$(CURDIR)/_build/html $(PY) -m pytest tests/test_browser.py -k every_page

# The version and public addresses live in pyproject.toml; these copy them into (or check) the chapters' Colab
# install cell, _config.yml, CITATION.cff, .zenodo.json, references.bib, the cite page and the README.
sync-metadata: $(STAMP)
	$(PY) -m volbias.publish.sync

check-metadata: $(STAMP)
	$(PY) -m volbias.publish.sync --check

# The supplementary-material archive of the book built at PROFILE (runs from VOLBIAS_RUNS_DIR). The HTML is
# built afresh: files left in _build/html by an earlier build would otherwise end up in the archive.
release: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(MAKE) book
	$(PY) -m volbias.publish.release --profile $(PROFILE)

package: $(STAMP)
	rm -f dist/volbias-*.whl dist/volbias-*.tar.gz
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/volbias-*.whl dist/volbias-*.tar.gz

benchmarks: $(STAMP)
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf _build _staging
