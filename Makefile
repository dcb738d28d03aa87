# Each target sets itself up from nothing: a fresh clone needs only python3.
# One virtual environment; each target installs the package's extras that it
# needs (pyproject.toml lists them), once: a stamp file per set of extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

comma := ,
# `$(call extras_stamp,a b)` is the stamp of `pip install -e ".[a,b]"`.
extras_stamp = $(VENV)/.installed-$(subst $() ,-,$(strip $(1)))

DEMO_EXTRAS := text examples
TEST_EXTRAS := text examples tfds bench test
BENCH_EXTRAS := text bench
DOCS_EXTRAS := text docs

.PHONY: demo test test-oldest bench docs install clean

$(VENV)/.created:
	@echo "Setting up $(VENV) (first run only: a few minutes of pip)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# --no-compile: Python compiles the modules it imports when it first imports
# them; compiling all of TensorFlow, PyTorch and JAX up front costs about a
# minute of a fresh `make test`.
$(VENV)/.installed-%: pyproject.toml setup.py | $(VENV)/.created
	@echo "Installing keras_dynmask with the extras: $*"
	$(PY) -m pip install --quiet --no-compile -e ".[$(subst -,$(comma),$*)]"
	touch $@

install: $(call extras_stamp,$(TEST_EXTRAS))

demo: $(call extras_stamp,$(DEMO_EXTRAS))
	$(PY) examples/demo.py

# Two workers (pytest-xdist), each taking whole test files: module- and
# session-scoped fixtures (trained models, service clusters) stay in one.
# Then the backend matrix: tests/backends/ again under JAX and PyTorch (the
# test extras install both).
test: $(call extras_stamp,$(TEST_EXTRAS))
	$(PY) -m pytest -q -n 2 --dist loadfile tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 --dist loadfile tests/backends
	KERAS_BACKEND=torch $(PY) -m pytest -q -n 2 --dist loadfile tests/backends

bench: $(call extras_stamp,$(BENCH_EXTRAS))
	$(PY) benchmarks/mlm_throughput.py

# The API reference, from the docstrings, into docs/api/ (not committed;
# open docs/api/index.html). tests/test_api_docs.py builds the same modules.
API_MODULES := keras_dynmask keras_dynmask.export keras_dynmask.text \
	keras_dynmask.tools.local_data_service
docs: $(call extras_stamp,$(DOCS_EXTRAS))
	PDOC_ALLOW_EXEC=1 $(PY) -m pdoc --docformat google --output-directory docs/api $(API_MODULES)

# The oldest supported releases of the core's dependencies (the lower bounds
# in pyproject.toml), in a venv of their own, on the tests of the core
# (TensorFlow backend; examples, benchmarks, other backends, the build and
# the docs left out).
OLDEST := .venv-oldest
OLDEST_PINS := tensorflow==2.16.2 tensorflow-text==2.16.1 keras==3.9.0 numpy==1.26.0
OLDEST_TESTS := tests --ignore=tests/examples --ignore=tests/benchmarks --ignore=tests/backends \
	--ignore=tests/test_packaging.py --ignore=tests/test_api_docs.py

# The stamp names the pins, so changing them reinstalls.
OLDEST_STAMP := $(OLDEST)/.installed-$(subst ==,-,$(subst $() ,_,$(strip $(OLDEST_PINS))))

$(OLDEST_STAMP): pyproject.toml setup.py
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -e ".[text]" $(OLDEST_PINS) \
		"pytest>=8" "pytest-xdist>=3.6" "hypothesis>=6.100"
	touch $@

test-oldest: $(OLDEST_STAMP)
	$(OLDEST)/bin/python -m pytest -q -n 2 --dist loadfile $(OLDEST_TESTS)

clean:
	rm -rf $(VENV) $(OLDEST) build dist docs/api *.egg-info
