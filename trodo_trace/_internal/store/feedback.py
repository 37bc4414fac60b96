"""The ``feedback`` table: scores, labels and comments attached to a run after it finished.

Each row comes from one ``trodo.feedback`` event (its event id is the de-duplication key, so a
batch written twice is stored once). The table lives in the local store file beside ``runs``; it is
created on first write, so a store that never received feedback has none and readers treat a
missing table as no feedback.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The event name a feedback row comes from.
EVENT_NAME = "trodo.feedback"

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, run_id TEXT NOT NULL, span_id TEXT,
    ts_ns INTEGER, name TEXT, score REAL, label TEXT, comment TEXT, distinct_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_run_id ON feedback (run_id);
"""
COLUMNS = ("event_id", "run_id", "span_id", "ts_ns", "name", "score", "label", "comment", "distinct_id")
_INSERT = f"INSERT OR IGNORE INTO feedback ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def create_table(conn: sqlite3.Connection) -> None:
    """Create the table and its index if missing (inside the caller's transaction, if any)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def rows_from_events(event_rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Feedback rows from event rows (``LocalStore.write_events`` shape) named ``trodo.feedback``."""
    rows = []
    for event in event_rows:
        if event.get("name") != EVENT_NAME or not event.get("run_id"):
            continue
        props = event.get("properties")
        props = props if isinstance(props, Mapping) else {}
        rows.append(
            (
                event.get("dedup_key"),
                event.get("run_id"),
                props.get("span_id"),
                event.get("ts_ns"),
                props.get("name"),
                props.get("score"),
                props.get("label"),
                props.get("comment"),
                event.get("distinct_id"),
            )
        )
    return rows


def write(path: str | os.PathLike[str], rows: Sequence[tuple[Any, ...]], *, retries: int = 6) -> None:
    """Insert feedback rows into the store file at ``path`` (created table included), in one transaction."""
    if not rows:
        return
    for attempt in range(retries):
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            create_table(conn)
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
            return
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or attempt == retries - 1:
                raise
            time.sleep(0.05 * (2**attempt))
        finally:
            conn.close()


def has_table(conn: sqlite3.Connection) -> bool:
    """Whether the store behind ``conn`` has a feedback table."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedback'").fetchone()
    return found is not None


def for_run(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    """The feedback of one run, oldest first (none when the store has no feedback table)."""
    if not has_table(conn):
        return []
    cursor = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM feedback WHERE run_id = ? ORDER BY ts_ns, id", (run_id,)
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def read_for_run(path: str | os.PathLike[str], run_id: str) -> list[dict[str, Any]]:
    """:func:`for_run` over the store file at ``path``, opened read-only."""
    conn = sqlite3.connect(f"{pathlib_uri(path)}?mode=ro", uri=True, timeout=30)
    try:
        return for_run(conn, run_id)
    finally:
        conn.close()


def pathlib_uri(path: str | os.PathLike[str]) -> str:
    """A ``file:`` URI for ``path`` (characters SQLite's URI parser treats specially are escaped)."""
    from urllib.parse import quote

    return "file:" + quote(os.path.abspath(os.fspath(path)))
