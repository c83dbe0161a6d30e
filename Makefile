# `make train` / `make test` set everything up on first use (.venv), then run.
# TORCH picks the torch build installed before the project. The default takes the
# CPU wheel on machines that carry it; on a GPU machine pass a CUDA build, e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_REPORT ?= docs/performance.md

.PHONY: setup train test test-fast test-capabilities bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

train: setup
	$(PY) -m adaptls.train $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not ddp and not wandb" $(ARGS)

# The numerics tests (their list: scripts/test_capabilities.py) again under each CPU
# capability torch can use here besides the one `make test` runs; ARGS go to pytest.
test-capabilities: setup
	$(PY) scripts/test_capabilities.py -- $(ARGS)

# Each script prints its tables and writes them, with the machine and the date, into its
# own section of $(BENCH_REPORT) (scripts/bench_report.py), leaving the other sections.
bench: setup
	$(PY) scripts/bench_loss.py --threads 1 --clock cpu --report $(BENCH_REPORT)
	$(PY) scripts/bench_linear.py --repeats 3 --skip-info --report $(BENCH_REPORT)
	$(PY) scripts/bench_metrics.py --threads 1 --report $(BENCH_REPORT)
	$(PY) scripts/bench_overhead.py --repeats 21 --train-only --epochs 5 --report $(BENCH_REPORT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
