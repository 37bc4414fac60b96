"""The store's schema 3: stores written by the two previous releases are migrated with every row,
each resource is stored once and read back with its spans, and a re-exported span replaces its row."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from spans import readable_span

from trodo_trace._internal.store.local import SCHEMA_VERSION, LocalStore
from trodo_trace.ui import queries as ui_queries

DATA = Path(__file__).parent / "data"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
V2_RESOURCE = {"service.name": "svc-v2", "deployment.environment": "test"}
REMOTE_RESOURCE = {"service.name": "svc-remote", "deployment.environment": "test"}


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _copy(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    return path


def _tree(store: LocalStore, run_id: str) -> list[tuple]:
    return [
        (s["name"], s["span_id"], s["parent_span_id"], s["run_id"], s["resource"]["service.name"])
        for s in store.get_spans(run_id)
    ]


def test_store_of_schema_2_is_migrated_with_every_row_and_its_resources(tmp_path):
    path = _copy("store_v2.db", tmp_path)
    assert _rows(path, "PRAGMA user_version") == [(2,)]
    with LocalStore(path) as store:
        parent = store.get_run("run-v2-parent")
        assert parent is not None
        assert (parent["name"], parent["cost_incomplete"], parent["span_count"]) == ("planner", True, 3)
        assert _tree(store, "run-v2-parent") == [
            ("planner", "0000000000000001", None, "run-v2-parent", "svc-v2"),
            ("call-model", "0000000000000002", "0000000000000001", "run-v2-parent", "svc-v2"),
            ("remote-tool", "0000000000000003", "0000000000000001", "run-v2-parent", "svc-remote"),
        ]
        spans = {s["name"]: s for s in store.get_spans("run-v2-parent")}
        assert spans["planner"]["resource"] == V2_RESOURCE
        assert spans["remote-tool"]["resource"] == REMOTE_RESOURCE
        assert spans["planner"]["attributes"]["input.value"] == '{"question": "plan"}'
        [child] = store.sub_runs("run-v2-parent")
        assert (child["run_id"], child["parent_span_id"]) == ("run-v2-child", "0000000000000002")
        assert [e["name"] for e in store.list_events()] == ["signup"]
        assert store.pushed("http://collector:4318", ["run:run-v2-child", "run:run-v2-parent"]) == {
            "run:run-v2-child"
        }
        outside = store.trace_spans("000000000000000000000000000000" + "0c")
        assert [(s["name"], s["run_id"], s["resource"]) for s in outside] == [
            ("health-check", None, V2_RESOURCE)
        ]
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 3
    # Each distinct resource once; the spans table no longer repeats it.
    assert sorted(r[0] for r in _rows(path, "SELECT attributes FROM resources")) == [
        '{"service.name":"svc-remote","deployment.environment":"test"}',
        '{"service.name":"svc-v2","deployment.environment":"test"}',
    ]
    columns = [r[1] for r in _rows(path, "PRAGMA table_info(spans)")]
    assert "resource" not in columns and "resource_id" in columns
    assert _rows(path, "SELECT name FROM spans WHERE joined = 1") == [("remote-tool",)]
    assert _rows(path, "PRAGMA integrity_check") == [("ok",)]


def test_store_of_schema_1_gets_its_resources_too(tmp_path):
    path = _copy("store_v1.db", tmp_path)
    with LocalStore(path) as store:
        assert {s["name"]: s["resource"] for s in store.get_spans("run-v1-parent")} == {
            "planner": {"service.name": "svc-v1"},
            "call-model": {"service.name": "svc-v1"},
            "remote-tool": {"service.name": "svc-remote"},
        }
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert len(_rows(path, "SELECT id FROM resources")) == 2


def test_dashboard_reads_a_store_of_schema_2_after_migrating_it(tmp_path):
    """The dashboard opens stores read-only: an older one is migrated first, then read."""
    path = _copy("store_v2.db", tmp_path)
    conn = ui_queries.connect(path)
    try:
        spans = ui_queries.get_spans(conn, "run-v2-parent")
        assert [(s["name"], s["resource"]) for s in spans] == [
            ("planner", V2_RESOURCE),
            ("call-model", V2_RESOURCE),
            ("remote-tool", REMOTE_RESOURCE),
        ]
        assert "resource_id" not in spans[0]
        one = ui_queries.get_span(conn, "run-v2-parent", "0000000000000003")
        assert one is not None and one["resource"] == REMOTE_RESOURCE
        [sub] = ui_queries.sub_runs(conn, "run-v2-parent")
        assert (sub["run_id"], sub["parent_span_id"]) == ("run-v2-child", "0000000000000002")
    finally:
        conn.close()
    assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def _span(
    name: str, span_id: int, *, service: str, run_id: str | None, parent: int | None = None
) -> ReadableSpan:
    attrs = {"trodo.span.kind": "tool"} | ({"trodo.run.id": run_id} if run_id else {})
    start = T0 + span_id * MS
    resource = Resource({"service.name": service})
    return readable_span(
        name, 0xABC, span_id, parent, start=start, end=start + MS, attrs=attrs, resource=resource
    )


def test_reexported_spans_replace_their_rows_in_a_migrated_store_and_a_new_one(tmp_path):
    """Spans written again (a retried batch, a replayed spool, two services in one batch, a span
    outside any run) keep one row each, with the resource they came with."""
    for path in (_copy("store_v2.db", tmp_path), tmp_path / "new.db"):
        with LocalStore(path) as store:
            store.open()
            before = _rows(path, "SELECT COUNT(*) FROM spans")[0][0]
            batch = [
                _span("a", 11, service="svc-a", run_id="run-x"),
                _span("b", 12, service="svc-b", run_id="run-x", parent=11),
                _span("loose", 13, service="svc-a", run_id=None),
            ]
            store.export_spans(batch)
            store.export_spans(batch)
            store.export_spans(batch[1:2])
            store.export_spans([_span("b", 12, service="svc-b", run_id="run-x", parent=11)] * 2)
            assert _rows(path, "SELECT COUNT(*) FROM spans")[0][0] == before + 3
            assert [(s["name"], s["resource"]) for s in store.get_spans("run-x")] == [
                ("a", {"service.name": "svc-a"}),
                ("b", {"service.name": "svc-b"}),
            ]
            loose = store.trace_spans("00000000000000000000000000000abc")
            assert [(s["name"], s["resource"]) for s in loose if s["run_id"] is None] == [
                ("loose", {"service.name": "svc-a"})
            ]
        texts = [r[0] for r in _rows(path, "SELECT attributes FROM resources")]
        # A new file takes 8 KiB pages; a migrated one keeps the pages it was written with.
        assert _rows(path, "PRAGMA page_size") == [(8192 if path.name == "new.db" else 4096,)]
        assert len(texts) == len(set(texts))
        assert {'{"service.name":"svc-a"}', '{"service.name":"svc-b"}'} <= set(texts)
