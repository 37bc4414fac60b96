PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
INTEROP_STAMP := .venv-interop/.installed-stamp

.PHONY: demo test lint bench bench-export interop-env clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Arize Phoenix for the interop tests, in its own virtualenv (reused while its requirement is unchanged).
$(INTEROP_STAMP): tests/interop/setup_env.py | $(STAMP)
	$(PY) tests/interop/setup_env.py

interop-env: $(STAMP) $(INTEROP_STAMP)

demo: $(STAMP)
	$(VENV)/bin/trodo-trace demo

test: $(STAMP) $(INTEROP_STAMP)
	$(VENV)/bin/ruff check trodo_trace tests bench
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check trodo_trace tests bench
	$(VENV)/bin/ruff format --check trodo_trace tests bench

# The whole suite beside the peers (one virtualenv each under bench/.envs/); writes BENCHMARKS.md.
# BENCH_ARGS=--quick for small counts.
bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

bench-export: $(STAMP)
	$(PY) bench/export.py

clean:
	rm -rf $(VENV) .venv-interop .trodo .pytest_cache
