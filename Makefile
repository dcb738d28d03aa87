# Each target sets itself up from nothing: a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench install clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench,examples]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Two workers (pytest-xdist), each taking whole test files: module- and
# session-scoped fixtures (trained models, service clusters) stay in one.
# Then the backend matrix: tests/backends/ again under JAX and PyTorch.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 --dist loadfile tests/backends
	KERAS_BACKEND=torch $(PY) -m pytest -q -n 2 --dist loadfile tests/backends

bench: $(STAMP)
	$(PY) benchmarks/mlm_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
