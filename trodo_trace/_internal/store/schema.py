"""The store's schema, its version (``PRAGMA user_version``) and the forward migrations.

A new file gets version 1's tables and then every migration in order, so a store written by any
earlier release takes exactly the path a new one does. A file whose version is newer than this
release knows, or that holds someone else's tables, is refused before anything is written to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

#: The schema this release writes. Version 1: spans, runs, events. Version 2: ``runs.cost_incomplete``,
#: ``spans.joined`` (rollups of runs joined from other processes), the ``push_log`` cursor of
#: ``trodo-trace push``, an index on ``events.run_id``. Version 3: each distinct resource stored once
#: (``resources``, referenced by ``spans.resource_id``), and ``spans`` keyed for fast appends: a
#: unique index on ``(start_ns, span_id, trace_id)`` (a re-exported span replaces its row) instead of
#: the ``(trace_id, span_id)`` primary key, and ``spans_run_id`` on ``(run_id, span_id)``.
SCHEMA_VERSION = 3

_V1 = """
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
CREATE INDEX IF NOT EXISTS events_ts_ns ON events (ts_ns)
"""

_JOINED_ATTR = "json_extract(attributes, '$.\"trodo.run.joined\"')"

_V2 = f"""
ALTER TABLE runs ADD COLUMN cost_incomplete INTEGER;
ALTER TABLE spans ADD COLUMN joined INTEGER;
UPDATE spans SET joined = 1 WHERE {_JOINED_ATTR} = 1;
CREATE INDEX IF NOT EXISTS spans_joined ON spans (run_id) WHERE joined = 1;
UPDATE runs SET cost_incomplete = 1 WHERE EXISTS (
    SELECT 1 FROM spans s WHERE s.trace_id = runs.trace_id AND s.span_id = runs.root_span_id
    AND json_extract(s.attributes, '$."trodo.run.cost_incomplete"') = 1);
CREATE INDEX IF NOT EXISTS events_run_id ON events (run_id);
CREATE TABLE IF NOT EXISTS push_log (
    destination TEXT NOT NULL, item TEXT NOT NULL, pushed_ns INTEGER,
    PRIMARY KEY (destination, item)
) WITHOUT ROWID
"""

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, run_id, name, kind, start_ns, end_ns, status, status_message,"
    " error_type, attributes, events"
)

# The spans table is rebuilt (SQLite cannot drop a primary key): rows are copied in start order,
# their resources moved to ``resources``. Index keys that grow with time (start_ns first) keep a
# batch's writes on the last pages of the index instead of one random page per span.
_V3 = f"""
CREATE TABLE resources (id INTEGER PRIMARY KEY, attributes TEXT NOT NULL UNIQUE);
INSERT OR IGNORE INTO resources (attributes) SELECT DISTINCT COALESCE(resource, '{{}}') FROM spans;
CREATE TABLE spans_v3 (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, run_id TEXT, name TEXT,
    kind TEXT, start_ns INTEGER, end_ns INTEGER, status TEXT, status_message TEXT, error_type TEXT,
    attributes TEXT, events TEXT, resource_id INTEGER, joined INTEGER
);
INSERT INTO spans_v3 ({_SPAN_COLUMNS}, resource_id, joined)
    SELECT {_SPAN_COLUMNS}, (SELECT id FROM resources WHERE attributes = COALESCE(spans.resource, '{{}}')),
    joined FROM spans ORDER BY start_ns;
DROP TABLE spans;
ALTER TABLE spans_v3 RENAME TO spans;
CREATE UNIQUE INDEX spans_key ON spans (start_ns, span_id, trace_id);
CREATE INDEX spans_run_id ON spans (run_id, span_id);
CREATE INDEX spans_joined ON spans (run_id) WHERE joined = 1
"""

#: ``MIGRATIONS[n]`` takes a store from version ``n - 1`` to ``n``.
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}

#: The tables every version has: a file with other tables and none of these is not a store.
CORE_TABLES = frozenset(("spans", "runs", "events"))


class StoreUnavailable(OSError):
    """The local store file cannot be opened, created or read."""


class StoreNotUnderstood(StoreUnavailable):
    """The file is SQLite but not a store this release can read: written by a newer release, or
    another program's database. Nothing is written to it."""


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def check(conn: sqlite3.Connection, path: object) -> int:
    """The file's schema version; raises :class:`StoreNotUnderstood` for a file this release must not
    touch (reads only)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreNotUnderstood(
            f"local store {path} was written by a newer trodo_trace (schema {version}; this release "
            f"reads up to {SCHEMA_VERSION}): upgrade trodo_trace to read it"
        )
    tables = _tables(conn) - {"sqlite_sequence"}
    if version == 0 and tables and not tables & CORE_TABLES:
        raise StoreNotUnderstood(f"{path} is an SQLite database but not a trodo_trace store")
    if version >= 1 and not CORE_TABLES <= tables:
        raise StoreNotUnderstood(f"{path} is an SQLite database but not a trodo_trace store")
    return version


def migrate(conn: sqlite3.Connection, path: object, *, create: bool) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` (each step in its own transaction). An empty file
    (a store another process is creating this instant, or an empty file) gets the schema."""
    version = check(conn, path)
    if version == SCHEMA_VERSION:
        return
    if version == 0 and not _tables(conn):
        # Only an empty file can take this; it lets retention give freed pages back to the disk.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        _step(conn, target, lambda: check(conn, path))


def _step(conn: sqlite3.Connection, target: int, recheck: Callable[[], int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if recheck() >= target:  # another process migrated it meanwhile
            conn.execute("COMMIT")
            return
        for statement in MIGRATIONS[target].split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
