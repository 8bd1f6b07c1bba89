# Two commands set everything up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch 2.13.0 lies on disk; installed first, so that no range pulls a CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test test-slow lint check-install venv clean bench kill-stress gallery fuzz

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[torch,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/svertka demo

lint: $(STAMP)
	$(BIN)/ruff check .

# The suite minus the tests marked slow; CI (.ci/run) also runs `make test-slow`.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m slow

# A user's install in fresh venvs: `pip install .`, and `pip install '.[torch]'` (scripts/check_install.sh).
check-install:
	PY=$(PY) TORCH_PIN=$(TORCH) scripts/check_install.sh

# Every `svertka plot` kind into docs/gallery/ (trains two small LeNet-5 runs first; a few minutes).
# One BLAS thread: the engine's small GEMMs run several times slower when threads fight for the cores.
gallery: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m svertka.viz.gallery docs/gallery

# The long fuzz campaign of issue 16 (>= 100,000 inputs, niced): prints the table, writes JSON.
fuzz: $(STAMP)
	$(BIN)/python -m fuzz --campaign --jobs 2 --nice 10 --json benchmarks/results/fuzz.json

bench: $(STAMP)
	$(BIN)/python benchmarks/analysis_speed.py

# SIGKILL training runs (random moments and inside checkpoint writes), resume, compare bit for bit
kill-stress: $(STAMP)
	nice $(BIN)/python scripts/kill_stress.py

clean:
	rm -rf $(VENV) build src/*.egg-info
