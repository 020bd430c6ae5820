# tether: `make demo` and `make test` are all a new user needs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
DEMO_RUNS ?= $(CURDIR)/.tether/demo-runs

.PHONY: demo test lint bench bench-docs install dev system-deps format clean dist slurm-up slurm-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Editable install of the package and the example's needs.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[examples,view]'
	@touch $@

# Everything the tests and linters need.
$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

system-deps:
	@bash scripts/system-deps.sh

# The operations demo first; the decorated-main demo ends with a chart and report.md.
demo: $(VENV)/.installed
	@echo "=========== operations: examples/pipeline (tether.toml, tether run, a grid batch)"
	@DEMO_RUNS="$(DEMO_RUNS)" BIN="$(BIN)" bash examples/pipeline/demo.sh
	@echo
	@echo "=========== decorated mains: examples/digits (prepare -> train, History, plots, report)"
	@DEMO_RUNS="$(DEMO_RUNS)" BIN="$(BIN)" bash examples/digits/demo.sh
	@echo
	@echo "Browse these runs in the web view:"
	@echo "  $(BIN)/tether view --runs-dir $(DEMO_RUNS)"

# As root (CI runs as root), the Slurm tests get a real one-node cluster: scripts/slurm-up.sh
# installs slurm-wlm and munge if needed and starts the daemons (a no-op when they run).
slurm-up:
	@if [ "$$(id -u)" = "0" ]; then bash scripts/slurm-up.sh; \
	else echo "slurm-up: not root: the Slurm tests skip unless Slurm already runs here"; fi

slurm-down:
	@bash scripts/slurm-down.sh

test: $(VENV)/.dev-installed system-deps slurm-up
	$(BIN)/python -m pytest -n 4 -q

# Every tracked Python file is linted (scripts/lint_coverage.py fails on one ruff skips); the
# layers of docs/architecture.md are import-linter contracts in pyproject.toml.
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/lint_coverage.py
	$(BIN)/mypy src
	$(BIN)/lint-imports

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	@bash bench/run.sh

dist: $(VENV)/.dev-installed
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache src/*.egg-info

# docs/benchmarks.md's tables, regenerated from bench/results/*.json (no figure typed by hand).
bench-docs:
	$(PYTHON) scripts/bench_docs.py
