# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
THREADS ?= 2

.PHONY: venv demo test lint bench bench-serving bench-prepare bench-train clean

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

# Not a test: trains, compresses and times baseline against compressed on the
# real sample, both in one run (alternating rounds, medians), then times each
# artifact alone with `slimctr bench`.
REAL ?= ../shared/data/criteo/dac_union_12k.txt
bench: venv
	$(BIN)/slimctr run --data $(REAL) --out runs/bench --threads $(THREADS) --max-auc-drop 0.005 --bench-repeats 7
	$(BIN)/slimctr bench --model runs/bench/baseline --data $(REAL) --threads $(THREADS) --json runs/bench/bench_baseline.json
	$(BIN)/slimctr bench --model runs/bench/compressed --data $(REAL) --threads $(THREADS) --json runs/bench/bench_compressed.json

# Serving engines compared in one run; installs the optional [onnx] extra first.
bench-serving: bench
	$(BIN)/pip install --quiet -e '.[onnx]'
	$(BIN)/slimctr bench --model runs/bench/compressed --baseline runs/bench/baseline --threads $(THREADS) --json runs/bench/engines.json
	$(BIN)/python benchmarks/load_test.py --model runs/bench/compressed --clients 8 --requests 2000 --time-limit 500

# Not a test: slimctr prepare on 5M planted rows (made once, kept in
# PREPARE_DIR) beside pandas' read_csv of the same file, alternating rounds,
# medians; wall time, rows/s and peak RSS of each, as JSON too.
PREPARE_DIR ?= /tmp/slimctr-bench-prepare
bench-prepare: venv
	$(BIN)/python benchmarks/prepare_bench.py --dir $(PREPARE_DIR) --workers $(THREADS) --json runs/bench-prepare/prepare_bench.json

# Training throughput from a prepared cache (configs/train_bench.toml), on the
# 5M-row planted file bench-prepare makes; installs the optional [bench] extra
# first so DeepCTR-Torch's WDL is timed in the same run.
bench-train: venv
	$(BIN)/pip install --quiet -e '.[bench]'
	@test -f $(PREPARE_DIR)/synth-5000000.tsv || $(BIN)/slimctr synth --rows 5000000 --out $(PREPARE_DIR)/synth-5000000.tsv
	$(BIN)/python benchmarks/train_bench.py --data $(PREPARE_DIR)/synth-5000000.tsv --out runs/bench-train --threads $(THREADS)

clean:
	rm -rf runs .pytest_cache
