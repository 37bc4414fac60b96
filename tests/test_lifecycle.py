"""Configuration, lazy start, the local store path, internal-error isolation and OpenTelemetry interop."""

from __future__ import annotations

import ast
import logging
import sqlite3

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trodo_trace as trodo
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace._internal.core import errors
from trodo_trace.testing import capture


def _store_rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_decorators_work_before_init_and_land_in_the_local_store(tmp_path, monkeypatch):
    """With no init() the first span configures from the environment and runs reach TRODO_STORE."""
    store = tmp_path / "nested" / "trodo.db"
    monkeypatch.setenv("TRODO_STORE", str(store))

    @trodo.tool
    def lookup(x):
        return x * 2

    @trodo.agent("bot", distinct_id="u-7")
    def bot():
        return lookup(21)

    assert bot() == 42
    assert trodo.flush(5.0) is True
    assert (store.stat().st_mode & 0o777) == 0o600
    assert _store_rows(store, "SELECT name, distinct_id, span_count, tool_count, status FROM runs") == [
        ("bot", "u-7", 2, 1, "ok")
    ]
    assert sorted(_store_rows(store, "SELECT name, kind FROM spans")) == [("bot", "run"), ("lookup", "tool")]
    stats = trodo.stats()
    assert (stats["started"], stats["exported"], stats["dropped"], stats["queue_depth"]) == (2, 2, 0, 0)


def test_store_in_unwritable_place_warns_once_and_user_code_runs(tmp_path, caplog):
    """A store that cannot be created logs one warning; decorated code still returns its result."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    trodo.init(store_path=str(blocker / "trodo.db"))

    @trodo.tool
    def work(i):
        return i + 1

    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        assert [work(i) for i in range(3)] == [1, 2, 3]
        assert trodo.flush(5.0) is False
        assert [work(i) for i in range(3)] == [1, 2, 3]
        assert trodo.flush(5.0) is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(blocker) in warnings[0].getMessage()
    assert trodo.stats()["failed"] == 6


def test_init_rejects_bad_arguments_naming_them():
    """Bad init() arguments raise ValueError/TypeError that name the argument."""
    with pytest.raises(ValueError, match="endpoint"):
        trodo.init(endpoint="ftp://collector")
    with pytest.raises(ValueError, match="endpoint"):
        trodo.init(endpoint="not a url")
    with pytest.raises(TypeError, match="no_such_option"):
        trodo.init(no_such_option=1)
    with pytest.raises(ValueError, match="batch_size"):
        trodo.init(batch_size=0)
    with pytest.raises(TypeError, match="mask"):
        trodo.init(mask="not callable")
    with pytest.raises(ValueError, match="protocol"):
        trodo.init(protocol="carrier-pigeon")
    with pytest.raises(TypeError, match="site_id"):
        trodo.init(site_id=42)


def test_bad_environment_values_warn_and_fall_back(monkeypatch):
    """A bad environment value warns once and the default is used."""
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots")
    with pytest.warns(RuntimeWarning, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
        trodo.init()
    assert runtime_mod.get().config.max_export_batch_size == 512


def test_disabled_tracing_is_a_pass_through(monkeypatch):
    """TRODO_ENABLED=false: decorated code runs, nothing is recorded."""
    monkeypatch.setenv("TRODO_ENABLED", "false")

    @trodo.agent
    def agent(x):
        assert trodo.current_span() is None
        return x

    with capture() as traces:
        assert agent(5) == 5
    assert traces.spans == []


def test_internal_failure_is_logged_once_and_never_breaks_user_code(monkeypatch, caplog):
    """If the SDK itself fails, the user's function still runs and returns; one log line."""
    monkeypatch.setattr(errors, "RAISE_INTERNAL", False)
    runtime = runtime_mod.get()

    def broken_capture(*args, **kwargs):
        raise RuntimeError("sdk bug")

    monkeypatch.setattr(runtime, "capture", broken_capture)

    @trodo.tool
    def work(x):
        return x + 1

    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        assert [work(i) for i in range(5)] == [1, 2, 3, 4, 5]
    messages = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert len(messages) == 1


def test_get_tracer_spans_join_the_run():
    """Spans from trodo.get_tracer() nest in the current run with kind function."""

    @trodo.agent
    def agent():
        with trodo.get_tracer().start_as_current_span("raw-otel", attributes={"db.system": "sqlite"}) as span:
            span.set_attribute("rows", 3)

    with capture(deterministic=True) as traces:
        agent()
    assert traces.tree(("db.system", "rows")) == [
        {
            "name": "agent",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "raw-otel",
                    "kind": "function",
                    "status": "OK",
                    "attributes": {"db.system": "sqlite", "rows": 3},
                    "children": [],
                }
            ],
        }
    ]
    assert traces.by_name("raw-otel").run_id == traces.runs()[0].run_id


def test_other_opentelemetry_instrumentation_nests_under_our_spans():
    """A span from the app's own OpenTelemetry SDK provider parents to the current trodo span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app_tracer = provider.get_tracer("app")

    @trodo.tool
    def call_api():
        with app_tracer.start_as_current_span("HTTP GET"):
            pass

    with capture() as traces:
        call_api()
    (http_span,) = exporter.get_finished_spans()
    tool = traces.by_name("call_api")
    assert http_span.parent.span_id == int(tool.span_id, 16)
    assert http_span.context.trace_id == int(tool.trace_id, 16)
    provider.shutdown()


def test_reinit_keeps_open_spans_and_their_run():
    """init() called while a run is open: the run still ends whole in the new configuration."""

    @trodo.agent
    def agent():
        trodo.init(service_name="second")
        inner()

    @trodo.tool
    def inner():
        return 1

    with capture() as traces:
        agent()
    root = traces.runs()[0]
    assert root.attributes["trodo.run.span_count"] == 2
    assert traces.by_name("inner").parent_id == root.span_id
    assert runtime_mod.get().resource.attributes["service.name"] == "second"


def test_flush_and_shutdown_without_any_span_return_at_once():
    """flush() before anything was traced is True; shutdown() is safe to call twice."""
    assert trodo.flush(1.0) is True
    trodo.shutdown(1.0)
    trodo.shutdown(1.0)


def test_import_is_cheap_and_version_matches_metadata():
    """import trodo_trace loads no OpenTelemetry SDK and no framework; __version__ is the package's."""
    import subprocess
    import sys
    from importlib.metadata import version

    watched = (
        "opentelemetry.sdk",
        "langchain_core",
        "llama_index",
        "fastapi",
        "httpx",
        "requests",
        "asyncio",
    )
    code = (
        "import sys, {}; print(sorted(m for m in {!r} if m in sys.modules)); print(trodo_trace.__version__)"
    )
    # What the OpenTelemetry API loads by itself (older releases import asyncio) is not ours to save.
    api = subprocess.run(
        [
            sys.executable,
            "-c",
            code.format("opentelemetry.trace, opentelemetry.context, trodo_trace", watched),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = subprocess.run(
        [sys.executable, "-c", code.format("trodo_trace", watched)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    api_loaded = ast.literal_eval(api.split("\n")[0])
    assert "opentelemetry.sdk" not in api_loaded
    assert [m for m in ast.literal_eval(out[0]) if m not in api_loaded] == []
    assert out[1] == version("trodo-trace") == trodo.__version__


def test_threads_that_outlive_the_main_thread_are_stored(tmp_path):
    """The first span comes from threads still running after the main thread ended (no worker thread
    can start then on Python 3.12+): every span still reaches the local store, and nothing is logged."""
    from otlp_receiver import run_script

    code = """
    import threading, time, trodo_trace as trodo

    def worker(k):
        for i in range(20):
            with trodo.agent(f"thread-{k}"):
                time.sleep(0.005)

    for k in range(3):
        threading.Thread(target=worker, args=(k,)).start()
    """
    env = {"TRODO_STORE": str(tmp_path / "store.db"), "TRODO_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    result = run_script(code, tmp_path, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    db = sqlite3.connect(tmp_path / "store.db")
    try:
        rows = db.execute("SELECT name, COUNT(*) FROM spans GROUP BY name ORDER BY name").fetchall()
    finally:
        db.close()
    assert rows == [("thread-0", 20), ("thread-1", 20), ("thread-2", 20)]
