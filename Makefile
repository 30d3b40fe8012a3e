# The two commands of the README: `make compare` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FEWLABELS := $(BIN)/fewlabels
# Extra arguments for `make compare`, e.g. make compare ARGS="--preset seed --seeds 0 1 2"
ARGS ?=

.PHONY: setup data browser compare test lint clean

# torch is pinned in the same pip command as everything else: an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

data: $(STAMP)
	$(FEWLABELS) data fetch mnist

# the labeling page's browser test needs Chromium and its driver: installed where this can
# (Debian, as root); elsewhere the test is skipped and says why
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "Chromium could not be installed: the labeling page's browser test will be skipped"; \
	else echo "no Chromium: the labeling page's browser test will be skipped"; fi

setup: $(STAMP) data browser

compare: setup
	$(FEWLABELS) compare $(ARGS)

test: $(STAMP) data browser
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
