# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
THREADS ?= 2

.PHONY: venv demo test lint bench clean

$(BIN)/slimctr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the CPU build instead of a CUDA one
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/slimctr

venv: $(BIN)/slimctr

demo: venv
	$(BIN)/slimctr run --out runs/demo --threads $(THREADS)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: venv
	$(BIN)/python benchmarks/bench_compression.py --threads $(THREADS)

clean:
	rm -rf runs .pytest_cache
