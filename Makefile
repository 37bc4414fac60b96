# Two commands from a fresh clone: `make demo` and `make test`. Every environment is installed from
# the committed locks under requirements/ by tools/testenv.py (uv, pinned in the lock).
PYTHON ?= python3
ENV    := $(PYTHON) tools/testenv.py
VENV   := .venv
PY     := $(VENV)/bin/python
# pytest-xdist workers for the parallel part of the suite (tests marked serial run alone after it).
WORKERS ?= 2
export TRODO_TEST_WORKERS := $(WORKERS)

.PHONY: demo setup test test-default test-matrix test-oldest test-latest lint lock relock bench bench-export bench-store bench-ui screenshots interop-env clean

setup:
	@$(ENV) setup >/dev/null

interop-env:
	@$(ENV) interop >/dev/null

demo: setup
	$(VENV)/bin/trodo-trace demo

# The whole suite on this Python (with the Phoenix interop test), then on every other supported one,
# then the core suite on the oldest releases pyproject.toml allows.
test: test-default test-matrix test-oldest

test-default: setup interop-env
	$(VENV)/bin/ruff check trodo_trace tests bench tools
	$(VENV)/bin/ruff format --check --quiet trodo_trace tests bench tools
	$(VENV)/bin/mypy --strict trodo_trace
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site
	$(ENV) test

test-matrix: setup
	$(ENV) matrix

test-oldest: setup
	$(ENV) oldest

# Not in CI: the suite against the newest releases pyproject.toml allows, to see upstream drift first.
test-latest:
	$(ENV) latest

lint: setup
	$(VENV)/bin/ruff check trodo_trace tests bench tools
	$(VENV)/bin/ruff format --check trodo_trace tests bench tools

# Recompile the locks: `make lock` moves every pin to the newest allowed release;
# `make relock` keeps today's pins and only follows changes to pyproject.toml.
lock:
	$(ENV) lock

relock:
	$(ENV) lock --keep

# The whole suite beside the peers (one virtualenv each under bench/.envs/); writes BENCHMARKS.md.
# BENCH_ARGS=--quick for small counts.
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/store_write.py
	$(PY) bench/ui_bench.py

# The local store's write throughput alone (spans/s, batches of 512).
bench-store: setup
	$(PY) bench/store_write.py

# The dashboard alone: runs list and run page on a generated store of 100,000 runs / 1,000,000 spans.
bench-ui: setup
	$(PY) bench/ui_bench.py

# The dashboard screenshots shown in README.md and docs/dashboard.md (system Chromium).
screenshots: setup
	$(PY) tools/ui_screenshots.py

bench-export: setup
	$(PY) bench/export.py

clean:
	rm -rf $(VENV) .venvs .venv-interop .trodo .pytest_cache
