"""Every docstring example in the trodo_trace package runs under doctest and prints what it shows.

Modules are found by walking the package (never a hard-coded list), so moving or adding a module
needs no change here. Each module's examples run in a temporary working directory with the
default store, like a user trying them in a fresh directory; what they switch on for the whole
process (framework handlers, HTTP client patches) is taken back afterwards.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re

import pytest
from test_docs_examples import undo_process_wide_instrumentation

import trodo_trace

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    """Modules of the package whose source has an example (read from the file, not imported)."""
    names = ["trodo_trace"] + [
        info.name for info in pkgutil.walk_packages(trodo_trace.__path__, "trodo_trace.")
    ]
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as source:
            if ">>>" in source.read():
                found.append(name)
    return sorted(found)


MODULES = _module_names()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    """Each example of the module runs and its expected output matches (ELLIPSIS, whitespace-normalised)."""
    monkeypatch.delenv("TRODO_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    tests = [test for test in doctest.DocTestFinder().find(module, name) if test.examples]
    assert tests, f"{name} has '>>>' in its source but no example doctest finds"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    try:
        for test in tests:
            trodo_trace.shutdown(5.0)  # each docstring starts like a fresh process
            trodo_trace.init()
            runner.run(test, out=report.append)
    finally:
        undo_process_wide_instrumentation()
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)


def test_no_example_is_skipped():
    """No docstring example opts out with ``doctest: +SKIP``: every one must run."""
    skipping = []
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin
        with open(spec.origin, encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                if re.search(r"doctest:.*\+SKIP", line):
                    skipping.append(f"{name}:{number}")
    assert not skipping, skipping


def test_public_functions_have_an_example():
    """Every public function of ``trodo_trace`` and ``trodo_trace.testing`` has a docstring example (STYLE 10)."""
    import inspect

    import trodo_trace.testing as testing

    missing = [
        f"{module.__name__}.{name}"
        for module in (trodo_trace, testing)
        for name in module.__all__
        if inspect.isfunction(getattr(module, name)) and ">>>" not in (getattr(module, name).__doc__ or "")
    ]
    assert not missing, missing
