"""Embedded SQLite store for finished spans, run summaries and product events.

The store is a single SQLite file (WAL mode) that several processes may write
at once. Inside one process, writes come from the exporter thread and reads
from the CLI or other displays; one connection guarded by a lock serves both.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from ..config import default_store_path
from ..core.values import dumps, to_plain

logger = logging.getLogger("trodo_trace.store")

SCHEMA_VERSION = 1
_LOCK_RETRIES = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, run_id TEXT, name TEXT,
    kind TEXT, start_ns INTEGER, end_ns INTEGER, status TEXT, status_message TEXT, error_type TEXT,
    attributes TEXT, events TEXT, resource TEXT,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_run_id ON spans (run_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, trace_id TEXT, root_span_id TEXT, name TEXT, kind TEXT,
    distinct_id TEXT, conversation_id TEXT, parent_run_id TEXT, status TEXT, error_summary TEXT,
    start_ns INTEGER, end_ns INTEGER, duration_ms REAL, tokens_in INTEGER, tokens_out INTEGER,
    cost REAL, span_count INTEGER, tool_count INTEGER, error_count INTEGER, metadata TEXT,
    service_name TEXT
);
CREATE INDEX IF NOT EXISTS runs_distinct_id ON runs (distinct_id);
CREATE INDEX IF NOT EXISTS runs_conversation_id ON runs (conversation_id);
CREATE INDEX IF NOT EXISTS runs_parent_run_id ON runs (parent_run_id);
CREATE INDEX IF NOT EXISTS runs_start_ns ON runs (start_ns);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT UNIQUE, ts_ns INTEGER, name TEXT,
    distinct_id TEXT, category TEXT, run_id TEXT, trace_id TEXT, span_id TEXT, properties TEXT
);
CREATE INDEX IF NOT EXISTS events_distinct_id ON events (distinct_id);
CREATE INDEX IF NOT EXISTS events_ts_ns ON events (ts_ns);
"""

_SPAN_COLUMNS = tuple(
    "trace_id span_id parent_span_id run_id name kind start_ns end_ns status status_message"
    " error_type attributes events resource".split()
)
_RUN_COLUMNS = tuple(
    "run_id trace_id root_span_id name kind distinct_id conversation_id parent_run_id status"
    " error_summary start_ns end_ns duration_ms tokens_in tokens_out cost span_count tool_count"
    " error_count metadata service_name".split()
)
_EVENT_COLUMNS = tuple("dedup_key ts_ns name distinct_id category run_id trace_id span_id properties".split())


def _insert_sql(verb: str, table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({marks})"


_INSERT_SPAN = _insert_sql("INSERT OR REPLACE", "spans", _SPAN_COLUMNS)
_UPSERT_RUN = _insert_sql("INSERT OR REPLACE", "runs", _RUN_COLUMNS)
# A run root without rollups only fills a gap; it never overwrites a full row.
_INSERT_RUN_FALLBACK = _insert_sql("INSERT OR IGNORE", "runs", _RUN_COLUMNS)
_INSERT_EVENT = _insert_sql("INSERT OR IGNORE", "events", _EVENT_COLUMNS)


class StoreUnavailable(OSError):
    """The local store file cannot be opened, created or read."""


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _number(value: Any, cast: Callable[[Any], Any]) -> Any:
    """``cast(value)``, or None for missing, boolean or non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return cast(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _status_name(span: ReadableSpan) -> tuple[str, str | None]:
    status = span.status
    code = getattr(status, "status_code", StatusCode.UNSET)
    name = {StatusCode.OK: "ok", StatusCode.ERROR: "error"}.get(code, "unset")
    return name, getattr(status, "description", None)


def _is_full_run_root(attrs: Mapping[str, Any]) -> bool:
    return "trodo.run.id" in attrs and "trodo.run.span_count" in attrs


def _is_fallback_run_root(span: ReadableSpan, attrs: Mapping[str, Any]) -> bool:
    if "trodo.run.id" not in attrs or "trodo.run.span_count" in attrs:
        return False
    return span.parent is None or attrs.get("trodo.span.kind") == "run"


def _span_row(span: ReadableSpan) -> tuple[Any, ...]:
    attrs = dict(span.attributes or {})
    status, message = _status_name(span)
    events = [
        {
            "name": event.name,
            "timestamp": event.timestamp,
            "attributes": to_plain(dict(event.attributes or {}), leaves=False),
        }
        for event in span.events or ()
    ]
    error_type = attrs.get("error.type")
    if error_type is None and status == "error":
        for event in events:
            if event["name"] == "exception" and event["attributes"].get("exception.type"):
                error_type = event["attributes"]["exception.type"]
                break
    return (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
        format(span.parent.span_id, "016x") if span.parent is not None else None,
        _str_or_none(attrs.get("trodo.run.id")),
        span.name,
        _str_or_none(attrs.get("trodo.span.kind")),
        span.start_time,
        span.end_time,
        status,
        message,
        _str_or_none(error_type),
        dumps(attrs),
        dumps(events),
        _resource_json(span.resource),
    )


_resource_cache: dict[int, tuple[Any, str]] = {}


def _resource_json(resource: Any) -> str:
    """The resource's JSON text, computed once per resource object (every span of a process shares one)."""
    if resource is None:
        return "{}"
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    text = dumps(to_plain(dict(resource.attributes), leaves=False))
    if len(_resource_cache) > 64:
        _resource_cache.clear()
    _resource_cache[id(resource)] = (resource, text)
    return text


def _run_row(span: ReadableSpan) -> tuple[Any, ...]:
    attrs = span.attributes or {}
    span_status, _ = _status_name(span)
    status = attrs.get("trodo.run.status") or ("error" if span_status == "error" else "ok")
    duration = _number(attrs.get("trodo.run.duration_ms"), float)
    if duration is None and span.start_time is not None and span.end_time is not None:
        duration = (span.end_time - span.start_time) / 1e6
    metadata = attrs.get("trodo.metadata")
    if metadata is not None and not isinstance(metadata, str):
        metadata = dumps(to_plain(metadata, leaves=False))
    resource = span.resource.attributes if span.resource is not None else {}
    return (
        _str_or_none(attrs.get("trodo.run.id")),
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
        _str_or_none(attrs.get("trodo.agent.name")) or span.name,
        _str_or_none(attrs.get("trodo.span.kind")),
        _str_or_none(attrs.get("trodo.distinct_id")),
        _str_or_none(attrs.get("trodo.conversation_id")),
        _str_or_none(attrs.get("trodo.parent_run_id")),
        _str_or_none(status),
        _str_or_none(attrs.get("trodo.run.error_summary")),
        span.start_time,
        span.end_time,
        duration,
        _number(attrs.get("trodo.run.total_tokens_in"), int),
        _number(attrs.get("trodo.run.total_tokens_out"), int),
        _number(attrs.get("trodo.run.total_cost"), float),
        _number(attrs.get("trodo.run.span_count"), int),
        _number(attrs.get("trodo.run.tool_count"), int),
        _number(attrs.get("trodo.run.error_count"), int),
        metadata,
        _str_or_none(resource.get("service.name")),
    )


_JOINED = "trodo.run.joined"
_IN, _OUT, _COST = (
    f"json_extract(attributes, '$.\"{key}\"')"
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "trodo.llm.cost")
)
_JOINED_TOTALS = (
    f"SELECT COUNT(*), SUM(kind = 'tool'), SUM(status = 'error'), SUM({_IN}), SUM({_OUT}), SUM({_COST}),"
    f" SUM(({_IN} IS NOT NULL OR {_OUT} IS NOT NULL) AND {_COST} IS NULL) FROM spans"
    f" WHERE run_id = ? AND json_extract(attributes, '$.\"{_JOINED}\"') = 1"
)
_ROOT_ATTRIBUTES = (
    "SELECT s.attributes FROM runs r JOIN spans s ON s.trace_id = r.trace_id AND s.span_id = r.root_span_id"
    " WHERE r.run_id = ? AND r.span_count IS NOT NULL"
)


def _add_joined_spans(conn: sqlite3.Connection, run_id: str) -> None:
    """Set a run's rollups to its root's (the root's process) plus its spans marked ``trodo.run.joined``
    (other processes or services); recomputed from stored rows, so arrival order and re-exports don't matter."""
    root = conn.execute(_ROOT_ATTRIBUTES, (run_id,)).fetchone()
    totals = conn.execute(_JOINED_TOTALS, (run_id,)).fetchone() if root is not None else None
    if totals is None or not totals[0]:
        return  # no full root yet (its arrival recomputes), or nothing joined
    base = _loads(root[0], {})
    base = base if isinstance(base, Mapping) else {}
    sums = [
        (_number(base.get(f"trodo.run.{key}"), int) or 0) + int(extra or 0)
        for key, extra in zip(
            ("span_count", "tool_count", "error_count", "total_tokens_in", "total_tokens_out"),
            totals[:5],
            strict=True,
        )
    ]
    cost = (_number(base.get("trodo.run.total_cost"), float) or 0.0) + (totals[5] or 0.0)
    incomplete = bool(base.get("trodo.run.cost_incomplete")) or bool(totals[6])
    conn.execute(
        "UPDATE runs SET span_count = ?, tool_count = ?, error_count = ?, tokens_in = ?, tokens_out = ?,"
        " cost = ? WHERE run_id = ?",
        (*sums, round(cost, 10) if cost or not incomplete else None, run_id),
    )


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class LocalStore:
    """A SQLite file holding spans, runs and events; opened lazily on first use."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = pathlib.Path(path)
        self._create = create
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------

    def open(self) -> sqlite3.Connection:
        """Open (creating if allowed) the database file and its schema; idempotent."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    def _prepare_file(self) -> None:
        path = self.path
        if self._create:
            parent = path.parent
            if not parent.exists():
                os.makedirs(parent, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            self._prepare_file()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StoreUnavailable(f"local store {path} is unavailable: {reason}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
            self._retry(lambda: self._init_schema(conn))
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreUnavailable(f"local store {path} is unavailable: {exc}") from exc
            raise
        return conn

    @staticmethod
    def _init_schema(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection; a later call reopens it."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    @staticmethod
    def _retry(action: Callable[[], Any]) -> Any:
        for attempt in range(_LOCK_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(0.05 * (2**attempt))
        return None  # pragma: no cover

    def _write(self, body: Callable[[sqlite3.Connection], object]) -> None:
        def attempt() -> None:
            conn = self.open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        with self._lock:
            self._retry(attempt)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self.open()

            def run() -> list[sqlite3.Row]:
                cursor = conn.cursor()
                cursor.row_factory = sqlite3.Row
                try:
                    return cursor.execute(sql, tuple(params)).fetchall()
                finally:
                    cursor.close()

            rows: list[sqlite3.Row] = self._retry(run)
            return rows

    def _select(
        self, table: str, filters: Mapping[str, Any], order: str, limit: int | None = None
    ) -> list[sqlite3.Row]:
        """``SELECT *`` with equality filters (None means no filter), ordering and limit."""
        used = {column: value for column, value in filters.items() if value is not None}
        sql = f"SELECT * FROM {table}"
        if used:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column in used)
        params = list(used.values())
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(int(limit), 0))
        return self._query(sql, params)

    # -- writes ---------------------------------------------------------------------------

    def export_spans(self, spans: Sequence[ReadableSpan]) -> None:
        """Write finished spans (and the runs their roots summarise) in one transaction."""
        span_rows = []
        run_rows = []
        fallback_rows = []
        rollup_runs: set[str] = set()  # runs whose rollups must add spans recorded elsewhere
        for span in spans:
            span_rows.append(_span_row(span))
            attrs = span.attributes or {}
            if _is_full_run_root(attrs):
                run_rows.append(_run_row(span))
                rollup_runs.add(str(attrs["trodo.run.id"]))
            elif _is_fallback_run_root(span, attrs):
                fallback_rows.append(_run_row(span))
            if attrs.get(_JOINED) is True and "trodo.run.id" in attrs:
                rollup_runs.add(str(attrs["trodo.run.id"]))
        if not span_rows:
            return

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_SPAN, span_rows)
            if fallback_rows:
                conn.executemany(_INSERT_RUN_FALLBACK, fallback_rows)
            if run_rows:
                conn.executemany(_UPSERT_RUN, run_rows)
            for run_id in sorted(rollup_runs):
                _add_joined_spans(conn, run_id)

        self._write(body)

    def write_events(self, rows: list[dict[str, Any]]) -> None:
        """Insert product events; a row whose ``dedup_key`` is already stored is skipped."""
        values = []
        for row in rows:
            props = row.get("properties")
            if props is not None and not isinstance(props, str):
                props = dumps(to_plain(props, leaves=False))
            values.append(tuple(props if col == "properties" else row.get(col) for col in _EVENT_COLUMNS))
        if values:
            self._write(lambda conn: conn.executemany(_INSERT_EVENT, values))

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        data["metadata"] = _loads(data.get("metadata"))
        return data

    @staticmethod
    def _span_dict(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        data["attributes"] = _loads(data.get("attributes"), {})
        data["events"] = _loads(data.get("events"), [])
        data["resource"] = _loads(data.get("resource"), {})
        start, end = data.get("start_ns"), data.get("end_ns")
        data["duration_ms"] = (end - start) / 1e6 if start is not None and end is not None else None
        return data

    def list_runs(
        self,
        user: str | None = None,
        conversation: str | None = None,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = 20,
    ) -> list[dict[str, Any]]:
        """Runs newest first, filtered by user, conversation, status and exact name."""
        filters = {"distinct_id": user, "conversation_id": conversation, "status": status, "name": name}
        rows = self._select("runs", filters, "start_ns DESC, run_id DESC", limit)
        return [self._run_dict(row) for row in rows]

    def resolve_run_ids(self, run_id: str) -> list[str]:
        """Run ids equal to ``run_id`` or, for 6+ characters, starting with it (at most 10)."""
        exact = self._query("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        if exact or len(run_id) < 6:
            return [row["run_id"] for row in exact]
        pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 10",
            (pattern,),
        )
        # LIKE is case-insensitive for ASCII; keep only true prefixes.
        return [row["run_id"] for row in rows if row["run_id"].startswith(run_id)]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run with this id, or with this unique prefix of at least 6 characters."""
        matches = self.resolve_run_ids(run_id)
        if len(matches) != 1:
            return None
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (matches[0],))
        return self._run_dict(rows[0]) if rows else None

    def get_spans(self, run_id: str) -> list[dict[str, Any]]:
        """Spans of a run ordered by start time."""
        rows = self._select("spans", {"run_id": run_id}, "start_ns, span_id")
        return [self._span_dict(row) for row in rows]

    def sub_runs(self, run_id: str) -> list[dict[str, Any]]:
        """Runs whose parent run is ``run_id``, newest first."""
        rows = self._select("runs", {"parent_run_id": run_id}, "start_ns DESC, run_id DESC")
        return [self._run_dict(row) for row in rows]

    def conversation_runs(self, conversation_id: str) -> list[dict[str, Any]]:
        """Runs of a conversation, oldest first."""
        rows = self._select("runs", {"conversation_id": conversation_id}, "start_ns, run_id")
        return [self._run_dict(row) for row in rows]

    def list_events(
        self, user: str | None = None, name: str | None = None, limit: int | None = 100
    ) -> list[dict[str, Any]]:
        """Stored events newest first, filtered by user and exact name."""
        rows = self._select("events", {"distinct_id": user, "name": name}, "ts_ns DESC, id DESC", limit)
        return [{**dict(row), "properties": _loads(row["properties"], {})} for row in rows]


#: Errors that come from one item's data (not from the database): retried item by item.
DATA_ERRORS = (UnicodeError, ValueError, TypeError, OverflowError, RecursionError)


def each_alone(write: Any, items: Sequence[Any], what: str) -> int:
    """Write ``items`` one at a time after a batch failed on its data; how many could not be written."""
    lost = 0
    for item in items:
        try:
            write([item])
        except DATA_ERRORS:
            lost += 1
    if lost:
        logger.warning(
            "trodo_trace: %d %s could not be stored and were dropped (the rest were kept)", lost, what
        )
    return lost


class LocalStoreExporter(SpanExporter):
    """Span exporter writing to a :class:`LocalStore`; never raises, logs the first failure."""

    def __init__(self, store: LocalStore | str | os.PathLike[str] | None = None) -> None:
        if store is None:
            store = LocalStore(default_store_path())
        elif not isinstance(store, LocalStore):
            store = LocalStore(store)
        self.store = store
        self._failure_logged = False
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult | int:  # type: ignore[override]
        """Write ``spans``; a span whose data cannot be stored is dropped alone: then the number
        of spans lost is returned (the pipeline counts them as failed, the rest as exported)."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        try:
            self.store.export_spans(spans)
        except DATA_ERRORS:
            return each_alone(self.store.export_spans, spans, "spans")
        except Exception as exc:
            if not self._failure_logged:
                self._failure_logged = True
                logger.warning("trodo_trace: could not write spans to the local store: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shut_down = True
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
