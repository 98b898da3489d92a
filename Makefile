# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
# idle OpenMP threads yield instead of spinning: keeps 2-core timings stable under load
export OMP_WAIT_POLICY ?= PASSIVE
STAMP := $(VENV)/.tangentlens-installed

.PHONY: demo test test-fast test-slow bench clean setup findings

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tangentlens quickstart

# every question of docs/findings.md, answered by the experiments (CPU default scale;
# FINDINGS_ARGS="--scale quick --reuse" for a shorter run)
# MNIST (regime_gap, Q1/Q6) from the shared real test set when it is there
findings: export TANGENTLENS_DATA ?= $(abspath ../shared/data)
findings: $(STAMP)
	$(VENV)/bin/tangentlens findings $(FINDINGS_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

bench: $(STAMP)
	$(PY) benchmarks/bench_linearized.py
	$(PY) benchmarks/bench_ntk.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_ntk_tiled.py

clean:
	rm -rf $(VENV) build src/*.egg-info
