# Two entry points on a fresh machine with Python 3.11+ and pip: `make demo` and `make test`.
# One environment for both: the dev extra (tests, lint), the train extra (PyTorch, pinned to
# its CPU build, so the training tests run too; the daemon itself never imports it) and the
# report extra (matplotlib, pyarrow: session reports, Parquet exports, plots; the daemon never
# imports them either).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test lint format bench models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,train,report]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/exoctl hil --duration 20

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Regenerate the shipped models: the linear baseline and the calibration first (the network is
# tied to that calibration's fingerprint), then the network.
models: $(STAMP)
	$(BIN)/python -m exoctl.training.linear_model --out exoctl/models
	$(BIN)/python -m exoctl.training.default_model --out exoctl/models

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
