"""Tests of the embedded SQLite store (real files under tmp_path, real ReadableSpan objects)."""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from spans import readable_span

from trodo_trace._internal.store.local import (
    LocalStore,
    LocalStoreExporter,
    StoreUnavailable,
    default_store_path,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RESOURCE = Resource({"service.name": "svc-test"})
T0 = 1_700_000_000_000_000_000
MS = 1_000_000

RUN_A = "7f3e2a10c9d84b6e"
RUN_B = "7f3e2a10aa000002"  # sub-run of RUN_A, shares an 8-char prefix with it
RUN_C = "c0ffee00d00d0003"
TRACE_A = 0xA1
TRACE_C = 0xC3


def _span(name, trace_id, span_id, parent_id=None, *, start, end, attrs, events=(), status=None):
    return readable_span(
        name, trace_id, span_id, parent_id, start=start, end=end, attrs=attrs, resource=RESOURCE,
        events=events, status=status,
    )  # fmt: skip


def run_a_spans() -> list[ReadableSpan]:
    """Root run span with rollups, an llm child, and a failing tool child."""
    root = _span(
        "support_agent",
        TRACE_A,
        0x1,
        start=T0,
        end=T0 + 500 * MS,
        status=Status(StatusCode.ERROR, "ValueError: bad tool input"),
        attrs={
            "trodo.span.kind": "run",
            "trodo.run.id": RUN_A,
            "trodo.agent.name": "support_agent",
            "trodo.distinct_id": "user-1",
            "trodo.conversation_id": "conv-1",
            "trodo.metadata": '{"plan": "pro"}',
            "trodo.run.status": "error",
            "trodo.run.error_summary": "ValueError: bad tool input",
            "trodo.run.duration_ms": 500.0,
            "trodo.run.total_tokens_in": 120,
            "trodo.run.total_tokens_out": 45,
            "trodo.run.total_cost": 0.000123,
            "trodo.run.span_count": 3,
            "trodo.run.tool_count": 1,
            "trodo.run.error_count": 1,
            "input.value": '{"question": "refund?"}',
            "output.value": "null",
            "error.type": "ValueError",
        },
    )
    llm = _span(
        "chat gpt-4o-mini",
        TRACE_A,
        0x2,
        0x1,
        start=T0 + 10 * MS,
        end=T0 + 110 * MS,
        attrs={
            "trodo.span.kind": "llm",
            "trodo.run.id": RUN_A,
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 45,
            "trodo.llm.cost": 0.000123,
            "trodo.llm.time_to_first_token_ms": 42.5,
            "trodo.llm.stop": ("\n", "END"),
        },
    )
    tool = _span(
        "lookup_order",
        TRACE_A,
        0x3,
        0x1,
        start=T0 + 120 * MS,
        end=T0 + 125 * MS,
        status=Status(StatusCode.ERROR, "bad tool input"),
        attrs={
            "trodo.span.kind": "tool",
            "trodo.run.id": RUN_A,
            "trodo.tool.name": "lookup_order",
            "error.type": "ValueError",
        },
        events=[
            Event(
                "exception",
                {
                    "exception.type": "ValueError",
                    "exception.message": "bad tool input",
                    "exception.stacktrace": "Traceback (most recent call last):\n  ...",
                },
                timestamp=T0 + 124 * MS,
            )
        ],
    )
    return [llm, tool, root]


def run_b_spans() -> list[ReadableSpan]:
    """A sub-run of RUN_A without a known cost."""
    root = _span(
        "researcher",
        TRACE_A,
        0x10,
        0x1,
        start=T0 + 200 * MS,
        end=T0 + 300 * MS,
        attrs={
            "trodo.span.kind": "agent",
            "trodo.run.id": RUN_B,
            "trodo.agent.name": "researcher",
            "trodo.distinct_id": "user-1",
            "trodo.conversation_id": "conv-1",
            "trodo.parent_run_id": RUN_A,
            "trodo.run.status": "ok",
            "trodo.run.duration_ms": 100.0,
            "trodo.run.total_tokens_in": 0,
            "trodo.run.total_tokens_out": 0,
            "trodo.run.span_count": 2,
            "trodo.run.tool_count": 0,
            "trodo.run.error_count": 0,
        },
    )
    step = _span(
        "search_docs",
        TRACE_A,
        0x11,
        0x10,
        start=T0 + 210 * MS,
        end=T0 + 250 * MS,
        attrs={"trodo.span.kind": "retrieval", "trodo.run.id": RUN_B, "trodo.retrieval.result_count": 3},
    )
    return [step, root]


def run_c_spans() -> list[ReadableSpan]:
    """A later, successful run of another user and conversation."""
    root = _span(
        "billing_agent",
        TRACE_C,
        0x20,
        start=T0 + 10_000 * MS,
        end=T0 + 10_050 * MS,
        attrs={
            "trodo.span.kind": "run",
            "trodo.run.id": RUN_C,
            "trodo.agent.name": "billing_agent",
            "trodo.distinct_id": "user-2",
            "trodo.conversation_id": "conv-2",
            "trodo.run.status": "ok",
            "trodo.run.duration_ms": 50.0,
            "trodo.run.total_tokens_in": 10,
            "trodo.run.total_tokens_out": 5,
            "trodo.run.total_cost": 0.5,
            "trodo.run.span_count": 1,
            "trodo.run.tool_count": 0,
            "trodo.run.error_count": 0,
        },
    )
    return [root]


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path / "data" / "trodo.db")
    yield s
    s.close()


@pytest.fixture
def filled(store):
    store.export_spans(run_a_spans())
    store.export_spans(run_b_spans())
    store.export_spans(run_c_spans())
    return store


def _count(path, table: str) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_default_store_path_uses_env_then_cwd(monkeypatch, tmp_path):
    """default_store_path honours TRODO_STORE, else ./.trodo/trodo.db under the cwd."""
    monkeypatch.setenv("TRODO_STORE", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"
    monkeypatch.delenv("TRODO_STORE")
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".trodo" / "trodo.db"


def test_store_is_lazy(tmp_path):
    """Constructing a LocalStore creates nothing on disk."""
    s = LocalStore(tmp_path / "lazy" / "trodo.db")
    s.close()
    assert not (tmp_path / "lazy").exists()


def test_run_row_round_trips(filled):
    """A run root's rollup attributes become the whole runs row."""
    assert filled.get_run(RUN_A) == {
        "run_id": RUN_A,
        "trace_id": format(TRACE_A, "032x"),
        "root_span_id": format(0x1, "016x"),
        "name": "support_agent",
        "kind": "run",
        "distinct_id": "user-1",
        "conversation_id": "conv-1",
        "parent_run_id": None,
        "status": "error",
        "error_summary": "ValueError: bad tool input",
        "start_ns": T0,
        "end_ns": T0 + 500 * MS,
        "duration_ms": 500.0,
        "tokens_in": 120,
        "tokens_out": 45,
        "cost": 0.000123,
        "span_count": 3,
        "tool_count": 1,
        "error_count": 1,
        "metadata": {"plan": "pro"},
        "service_name": "svc-test",
        "cost_incomplete": False,
        "closed_early": False,
    }


def test_span_rows_round_trip(filled):
    """Spans read back ordered by start with hex ids, parents and decoded attributes/events."""
    spans = filled.get_spans(RUN_A)
    assert [s["name"] for s in spans] == ["support_agent", "chat gpt-4o-mini", "lookup_order"]
    root, llm, tool = spans
    assert root["parent_span_id"] is None
    assert llm["parent_span_id"] == tool["parent_span_id"] == "0000000000000001"
    assert llm["span_id"] == "0000000000000002"
    assert llm["trace_id"] == "000000000000000000000000000000a1"
    assert llm["kind"] == "llm" and llm["status"] == "ok" and llm["error_type"] is None
    assert llm["duration_ms"] == 100.0
    assert llm["attributes"]["gen_ai.usage.input_tokens"] == 120
    assert llm["attributes"]["trodo.llm.cost"] == 0.000123
    assert llm["attributes"]["trodo.llm.stop"] == ["\n", "END"]
    assert llm["events"] == []
    assert llm["resource"] == {"service.name": "svc-test"}
    assert tool["status"] == "error"
    assert tool["status_message"] == "bad tool input"
    assert tool["error_type"] == "ValueError"
    assert tool["events"] == [
        {
            "name": "exception",
            "timestamp": T0 + 124 * MS,
            "attributes": {
                "exception.type": "ValueError",
                "exception.message": "bad tool input",
                "exception.stacktrace": "Traceback (most recent call last):\n  ...",
            },
        }
    ]


def test_duplicate_export_leaves_one_row(store):
    """Exporting the same spans twice keeps one span row and one run row each."""
    store.export_spans(run_a_spans())
    store.export_spans(run_a_spans())
    assert _count(store.path, "spans") == 3
    assert _count(store.path, "runs") == 1


def test_cost_is_null_when_absent(filled):
    """A run without trodo.run.total_cost stores cost NULL, not 0."""
    assert filled.get_run(RUN_B)["cost"] is None
    assert filled.get_run(RUN_B)["tokens_in"] == 0
    conn = sqlite3.connect(str(filled.path))
    try:
        assert conn.execute("SELECT cost IS NULL FROM runs WHERE run_id = ?", (RUN_B,)).fetchone() == (1,)
    finally:
        conn.close()


def test_root_without_rollups_is_replaced_by_full_row(store):
    """A run root lacking rollups gives a provisional run row that the full root then replaces."""
    bare = _span(
        "bare",
        0xB,
        0x1,
        start=T0,
        end=T0 + MS,
        attrs={"trodo.span.kind": "run", "trodo.run.id": "bare-run-1"},
    )
    store.export_spans([bare])
    assert store.get_run("bare-run-1")["span_count"] is None
    assert store.get_run("bare-run-1")["status"] == "ok"
    full = _span(
        "bare",
        0xB,
        0x1,
        start=T0,
        end=T0 + MS,
        attrs={"trodo.span.kind": "run", "trodo.run.id": "bare-run-1", "trodo.run.span_count": 1},
    )
    store.export_spans([full])
    store.export_spans([bare])
    assert store.get_run("bare-run-1")["span_count"] == 1


def test_file_mode_and_parent_directory(store):
    """The first write creates the parent directory (0o700) and the db file (0o600)."""
    store.export_spans(run_c_spans())
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) & 0o077 == 0
    conn = store.open()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_existing_wide_file_is_tightened(tmp_path):
    """An existing store file with group/other bits is chmod-ed to 0o600 on open."""
    path = tmp_path / "wide.db"
    path.touch()
    path.chmod(0o644)
    with LocalStore(path) as s:
        s.export_spans(run_c_spans())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_unwritable_location_raises_store_unavailable(tmp_path):
    """A path under a regular file raises StoreUnavailable naming the path."""
    (tmp_path / "afile").write_text("not a directory")
    path = tmp_path / "afile" / "db.sqlite"
    s = LocalStore(path)
    with pytest.raises(StoreUnavailable) as info:
        s.export_spans(run_c_spans())
    s.close()
    assert isinstance(info.value, OSError)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_corrupt_file_raises_store_unavailable(tmp_path):
    """A file that is not SQLite raises StoreUnavailable instead of a raw sqlite error."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is definitely not a sqlite database" * 100)
    s = LocalStore(path)
    with pytest.raises(StoreUnavailable, match=r"junk\.db"):
        s.list_runs()
    s.close()


def test_exporter_success_and_flush(tmp_path):
    """LocalStoreExporter writes spans, force_flush returns True, shutdown closes the store."""
    exporter = LocalStoreExporter(tmp_path / "exp.db")
    assert exporter.export(run_a_spans()) is SpanExportResult.SUCCESS
    assert exporter.force_flush(timeout_millis=10) is True
    exporter.shutdown()
    assert _count(tmp_path / "exp.db", "spans") == 3
    assert exporter.export(run_c_spans()) is SpanExportResult.FAILURE


def test_exporter_failure_is_logged_once_and_never_raises(tmp_path):
    """On a broken store export returns FAILURE every time and logs a single warning."""
    (tmp_path / "afile").write_text("x")
    exporter = LocalStoreExporter(LocalStore(tmp_path / "afile" / "db.sqlite"))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("trodo_trace.store")
    log.addHandler(handler)
    try:
        assert exporter.export(run_a_spans()) is SpanExportResult.FAILURE
        assert exporter.export(run_c_spans()) is SpanExportResult.FAILURE
    finally:
        log.removeHandler(handler)
        exporter.shutdown()
    assert len(records) == 1
    assert "afile" in records[0].getMessage()


_WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[4])
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags
    from trodo_trace._internal.store.local import LocalStore

    path, worker, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    trace_id = 0x1000 + worker
    def ctx(span_id):
        return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1))
    spans = [
        ReadableSpan(
            name=f"w{worker}-{i}",
            context=ctx(i + 1),
            parent=ctx(0xFFFF),
            attributes={"trodo.run.id": f"run-{worker}", "trodo.span.kind": "function"},
            start_time=i,
            end_time=i + 1,
        )
        for i in range(200)
    ]
    store = LocalStore(path)
    while time.time() < start_at:
        time.sleep(0.005)
    for i in range(0, 200, 2):
        store.export_spans(spans[i : i + 2])
    store.close()
    """
)


def test_concurrent_processes_lose_no_spans(tmp_path):
    """Four processes writing 200 spans each to one file leave all 800 rows."""
    path = tmp_path / "shared" / "trodo.db"
    start_at = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(n), str(start_at), str(REPO_ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err.decode()
    assert _count(path, "spans") == 800
    with LocalStore(path) as s:
        assert len(s.get_spans("run-2")) == 200


def test_list_runs_newest_first_and_filters(filled):
    """list_runs orders newest first and filters by user, conversation, status, name and limit."""
    assert [r["run_id"] for r in filled.list_runs()] == [RUN_C, RUN_B, RUN_A]
    assert [r["run_id"] for r in filled.list_runs(user="user-1")] == [RUN_B, RUN_A]
    assert [r["run_id"] for r in filled.list_runs(conversation="conv-2")] == [RUN_C]
    assert [r["run_id"] for r in filled.list_runs(status="error")] == [RUN_A]
    assert [r["run_id"] for r in filled.list_runs(status="ok", user="user-1")] == [RUN_B]
    assert [r["run_id"] for r in filled.list_runs(name="researcher")] == [RUN_B]
    assert filled.list_runs(name="research") == []
    assert [r["run_id"] for r in filled.list_runs(limit=2)] == [RUN_C, RUN_B]
    assert filled.list_runs(user="nobody") == []


def test_get_run_by_prefix(filled):
    """get_run accepts a unique prefix of 6+ characters and rejects short or ambiguous ones."""
    assert filled.get_run("c0ffee")["run_id"] == RUN_C
    assert filled.get_run("7f3e2a10c9")["run_id"] == RUN_A
    assert filled.get_run("c0ffe") is None
    assert filled.get_run("7f3e2a") is None
    assert filled.resolve_run_ids("7f3e2a") == [RUN_B, RUN_A]
    assert filled.get_run("7F3E2A10C9") is None
    assert filled.get_run("missing-run") is None


def test_sub_runs_and_conversation_runs(filled):
    """sub_runs finds children by parent_run_id; conversation_runs lists oldest first."""
    assert [r["run_id"] for r in filled.sub_runs(RUN_A)] == [RUN_B]
    assert filled.sub_runs(RUN_C) == []
    assert filled.get_run(RUN_B)["parent_run_id"] == RUN_A
    assert [r["run_id"] for r in filled.conversation_runs("conv-1")] == [RUN_A, RUN_B]
    assert [s["name"] for s in filled.get_spans(RUN_B)] == ["researcher", "search_docs"]


def test_events_write_dedup_and_filters(store):
    """write_events skips repeated dedup keys; list_events filters and orders newest first."""
    rows = [
        {"dedup_key": "k1", "ts_ns": T0, "name": "signup", "distinct_id": "u1", "properties": {"a": 1}},
        {"dedup_key": "k2", "ts_ns": T0 + 1, "name": "purchase", "distinct_id": "u1", "run_id": RUN_A},
        {"dedup_key": "k3", "ts_ns": T0 + 2, "name": "signup", "distinct_id": "u2", "category": "auth"},
    ]
    assert store.list_events() == []
    store.write_events(rows)
    store.write_events(rows[:1])
    events = store.list_events()
    assert [e["dedup_key"] for e in events] == ["k3", "k2", "k1"]
    assert events[2]["properties"] == {"a": 1}
    assert events[1]["run_id"] == RUN_A
    assert [e["dedup_key"] for e in store.list_events(user="u1")] == ["k2", "k1"]
    assert [e["dedup_key"] for e in store.list_events(name="signup", limit=1)] == ["k3"]


def test_attribute_text_matches_the_json_module(tmp_path):
    """The stored attribute text is exactly what ``json.dumps`` writes (non-ASCII, NaN and
    infinities, sequences, escapes), and a batch that must fall back for one value keeps the rest."""
    import json

    attrs = {
        "text": 'héllo "quoted"\n\u2028',
        "nan": float("nan"),
        "inf": float("inf"),
        "big": 2**62,
        "flag": True,
        "seq": ("a", "b"),
        "floats": (0.1, -1e300),
    }
    context = SpanContext(0xB1, 0x1, False, TraceFlags(1))
    span = ReadableSpan(name="s", context=context, attributes=attrs, status=Status(StatusCode.UNSET))
    with LocalStore(tmp_path / "t.db") as store:
        store.export_spans([span])
        text = store._query("SELECT attributes, status FROM spans")[0]
    expected = json.dumps(attrs, ensure_ascii=False, separators=(",", ":"))
    assert text["attributes"] == expected
    assert text["status"] == "unset"


def test_our_spans_are_stored_exactly_as_their_sdk_spans_would_be():
    """The store takes our finished spans without building SDK spans: every row (spans, runs) is
    the one the ``ReadableSpan`` path writes, for spans of every shape (bad values, surrogates,
    events, links, errors, non-ASCII names, a run with rollups, a remote parent)."""
    from test_otlp_encode import _make_spans

    import trodo_trace as trodo
    from trodo_trace._internal import runtime as runtime_mod
    from trodo_trace._internal.export.convert import to_readable
    from trodo_trace._internal.export.resource import SCOPE
    from trodo_trace._internal.store import writer

    trodo.init(redact_secrets=False, service_name="store-rows")
    runtime = runtime_mod.get()
    assert runtime.store_takes_spans
    ended: list = []
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None  # keep the spans here
    _make_spans()
    assert len(ended) == 9
    direct = writer.prepare(ended, runtime.resource)
    via_sdk = writer.prepare([to_readable(span, runtime.resource, SCOPE) for span in ended])
    assert direct.spans == via_sdk.spans
    assert direct.runs == via_sdk.runs and len(direct.runs) >= 1
    assert direct.fallback_runs == via_sdk.fallback_runs
    assert direct.joined_runs == via_sdk.joined_runs
    by_name = {row[4]: row for row in direct.spans}
    assert by_name["ünïcode tool"][8:11] == ("error", "ValueError: no such thing: ü", "ValueError")
    assert '"surrogate":"bad \ufffd text"' in by_name["search"][11]
    assert {row[-2] for row in direct.spans} == {writer._resource_json(runtime.resource)}
