# Two commands set everything up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench gallery

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch 2.13.0 lies on disk; install it first so no range pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/svertka demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# Every `svertka plot` kind into docs/gallery/ (trains two small LeNet-5 runs first; a few minutes).
# One BLAS thread: the engine's small GEMMs run several times slower when threads fight for the cores.
gallery: $(STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m svertka.viz.gallery docs/gallery

bench: $(STAMP)
	$(BIN)/python benchmarks/analysis_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info
