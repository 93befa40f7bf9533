# exr-inspector: every target works from a fresh clone; `make install` sets up .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_tree
DEMO_FILES ?= 200
NATIVE_SRC := $(wildcard native/*.c native/*.h)

.PHONY: install test test-slow demo bench lint fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(NATIVE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import exr_inspector.exr as e; print('native scanner:', 'yes' if e.native_available() else 'NO (Python fallback)')"
	test -x $(VENV)/bin/exr-inspector
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -m "not slow and not live_vast"

test-slow: install
	$(PY) -m pytest -q -m "slow"

demo: install
	$(PY) bench/gen_tree.py $(DEMO_DIR) --files $(DEMO_FILES) --templates 8 --damaged 2 --seed 7
	$(PY) bench/demo.py $(DEMO_DIR)

bench: install
	$(PY) bench/bench_header.py
	$(PY) -m pytest -q bench --benchmark-only --benchmark-columns=median,ops

lint: install
	$(VENV)/bin/ruff check src tests bench

fuzz: install
	EXR_INSPECTOR_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf build dist src/*.egg-info src/exr_inspector/*.so $(DEMO_DIR) .pytest_cache .ruff_cache
