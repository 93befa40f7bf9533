# exr-inspector: every target works from a fresh clone; `make install` sets up .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BYTECODE := $(VENV)/.bytecode
PY_SRC := $(shell find src -name '*.py')
DEMO_DIR ?= demo_tree
DEMO_FILES ?= 3000
NATIVE_SRC := $(wildcard native/*.c native/*.h)

.PHONY: install test test-slow demo bench lint fuzz fuzz-asan clean

install: $(STAMP) $(BYTECODE)

$(STAMP): pyproject.toml setup.py Makefile $(NATIVE_SRC) src/exr_inspector/embed/numba_kernels.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools==84.2.1 wheel==0.48.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import exr_inspector.exr as e; print('native scanner:', 'yes' if e.native_available() else 'NO (Python fallback)')"
	$(PY) -c "from exr_inspector.embed import kernels as k; print('embedding kernels:', 'compiled' if k.BACKEND == 'aot' else 'NO (numba JIT fallback)')"
	test -x $(VENV)/bin/exr-inspector
	touch $(STAMP)

# Bytecode for the package, compiled once here: an editable install has none, and where the
# environment sets PYTHONDONTWRITEBYTECODE (CI does) every command would compile its ~30
# modules again, ~30 ms of each crawl's start-up. Stale files are only slower, never wrong.
$(BYTECODE): $(STAMP) $(PY_SRC)
	$(PY) -m compileall -q src/exr_inspector
	touch $(BYTECODE)

test: install
	$(PY) -m pytest -q -m "not slow and not live_vast"

test-slow: install
	$(PY) -m pytest -q -m "slow"

demo: install
	$(PY) bench/gen_tree.py $(DEMO_DIR) --files $(DEMO_FILES) --templates 24 --damaged 6 --seed 7
	$(PY) bench/demo.py $(DEMO_DIR) demo_catalog.duckdb

bench: install
	$(PY) bench/bench_header.py
	$(PY) bench/bench_crawl.py
	$(PY) bench/bench_recrawl.py
	$(PY) bench/bench_vast.py
	$(PY) bench/eval_recall.py
	$(PY) -m pytest -q bench --benchmark-only --benchmark-columns=median,ops

lint: install
	$(VENV)/bin/ruff check src tests bench

fuzz: install
	EXR_INSPECTOR_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf build dist src/*.egg-info src/exr_inspector/*.so src/exr_inspector/embed/*.so $(DEMO_DIR) .pytest_cache .ruff_cache $(BYTECODE)
	find src -name __pycache__ -prune -exec rm -rf {} +

# The native scanner built with AddressSanitizer + UBSan, then the hostile-input suites
# run against it. Rebuilds the normal extension afterwards.
fuzz-asan: install
	EXR_INSPECTOR_DEBUG_BUILD=1 $(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	EXR_INSPECTOR_FUZZ_EXAMPLES=3000 $(PY) -m pytest -q -x tests/test_fuzz.py tests/test_corpus.py tests/test_parser_cases.py \
		tests/test_chunk_parity.py tests/test_signatures.py tests/test_chunk_budget.py tests/test_prefetch.py; \
	rc=$$?; $(PY) setup.py -q build_ext --inplace --force; exit $$rc
