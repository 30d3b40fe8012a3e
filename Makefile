# The two commands of the README: `make compare` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FEWLABELS := $(BIN)/fewlabels
# Extra arguments for `make compare`, e.g. make compare ARGS="--preset seed --seeds 0 1 2"
ARGS ?=

.PHONY: setup data compare test lint clean

# torch is pinned in the same pip command as everything else: an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

data: $(STAMP)
	$(FEWLABELS) data fetch mnist

setup: $(STAMP) data

compare: setup
	$(FEWLABELS) compare $(ARGS)

test: $(STAMP) data
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
