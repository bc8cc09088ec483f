# One-command set-up: every target creates .venv (Python 3.12) if needed and installs the project.
SHELL := /bin/bash
# python3.12 on PATH if it runs, else a pyenv-installed 3.12.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Two cores: keep BLAS/torch from oversubscribing them.
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export OPENBLAS_NUM_THREADS ?= 2

.PHONY: setup demo test test-all bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.12 not found (set PYTHON=/path/to/python3.12)" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[fem,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) cli.py solve scenarios/quickstart.yaml --out results/quickstart.h5
	$(PY) cli.py plot results/quickstart.h5 -o results/quickstart.png
	@echo "wrote results/quickstart.h5 and results/quickstart.png"

# Two pytest-xdist workers, one per core, each with one BLAS/numba thread (tests/conftest.py
# pins torch to one): the suite in about half the wall time of one process.
test: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
		$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	$(PY) bench/grid.py
	$(PY) bench/convergence.py
	$(PY) bench/fem.py
	$(PY) bench/particles.py table
	$(PY) bench/particles.py timing
	$(PY) bench/particles.py stopping
	$(PY) bench/neural.py
	$(PY) bench/neural.py --pinwheel
	$(PY) bench/metrics.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache
