# Two entry points on a fresh machine with Python 3.11+ and pip: `make demo` and `make test`.
# `make demo` installs only what the demo needs (exoctl itself: no PyTorch, no test tools).
# `make test` adds the dev extra (tests, lint), the train extra (PyTorch's CPU build, so the
# training tests run too; the daemon itself never imports it) and the report extra (matplotlib,
# pyarrow: session reports, Parquet exports, plots; the daemon never imports them either).
# Where no CPU wheel of torch is on disk, point pip at PyTorch's CPU index: make test TORCH_INDEX=cpu
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell sha1sum pyproject.toml | cut -c1-12)
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
TORCH_INDEX ?=
PIP_TORCH := $(if $(filter cpu,$(TORCH_INDEX)),--extra-index-url https://download.pytorch.org/whl/cpu,$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),))

.PHONY: demo test lint format bench models firmware clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	rm -f $(VENV)/.installed-demo-* && touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,train,report]' $(PIP_TORCH)
	rm -f $(VENV)/.installed-test-* $(VENV)/.installed-demo-* && touch $@ $(DEMO_STAMP)

demo: $(if $(wildcard $(TEST_STAMP)),$(TEST_STAMP),$(DEMO_STAMP))
	$(BIN)/exoctl hil --duration 20

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=40

lint: $(TEST_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: $(TEST_STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Regenerate the shipped models: the linear baseline and the calibration first (the network is
# tied to that calibration's fingerprint), then the network.
models: $(TEST_STAMP)
	$(BIN)/python -m exoctl.training.linear_model --out exoctl/models
	$(BIN)/python -m exoctl.training.default_model --out exoctl/models

# The reference firmware for QEMU's lm3s6965evb (needs gcc-arm-none-eabi); `make test` builds
# it too, through the tests that run it (into the user's cache directory, not the tree).
firmware:
	$(MAKE) -C firmware BUILD=$(abspath build/firmware)

# make bench BENCH_ARGS="--only realtime_quota --quota-seconds 60": options of python -m bench
BENCH_ARGS ?=
bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info
