"""Shared test setup: internal SDK errors raise, every test gets a fresh runtime and its own store."""

from __future__ import annotations

import os

os.environ["TRODO_RAISE_INTERNAL"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm: no price-map download at import
for _var in list(os.environ):
    if _var.startswith(("TRODO_", "OTEL_")) and _var != "TRODO_RAISE_INTERNAL":
        del os.environ[_var]

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_runtime(tmp_path_factory, monkeypatch):
    """Each test starts with no runtime and a private local store."""
    from trodo_trace._internal import runtime as runtime_mod

    store = tmp_path_factory.mktemp("store") / "trodo.db"
    monkeypatch.setenv("TRODO_STORE", str(store))
    runtime_mod.reset_for_tests()
    yield
    runtime_mod.reset_for_tests()
