# Two commands set everything up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench fuzz

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

# The long fuzz campaign of issue 16 (>= 100,000 inputs, niced): prints the table, writes JSON.
fuzz: $(STAMP)
	$(BIN)/python -m fuzz --campaign --jobs 2 --nice 10 --json benchmarks/results/fuzz.json

bench: $(STAMP)
	$(BIN)/python benchmarks/analysis_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info
