# Two commands: `make demo` (the main job) and `make test`. Both set up .venv on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0        # CPU wheel first, so nothing pulls a CUDA build
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fewstep demo

test: $(STAMP)               # the whole suite, slow-marked tests included (~6 min on 2 cores)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)          # skip the tests marked slow
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(VENV)/bin/fewstep bench all

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
