"""Retention: the oldest whole runs leave the store, with their spans, events and feedback.

Runs are removed oldest first (by start time), a few hundred per transaction so writers are never
held up for long: those that started before a cutoff (``store_max_age_days``), then as many as it
takes to bring the data under a size (``store_max_bytes``). Events outside any run follow the same
rules by their own time. Freed pages are reused by later writes; a store created by this release
also gives them back to the disk at once (``auto_vacuum=INCREMENTAL``); ``vacuum()`` rewrites the
file to its smallest size.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Write = Callable[[Callable[[sqlite3.Connection], T]], T]

_CHUNK = 500
NS_PER_DAY = 86_400 * 10**9
#: A size cap prunes to this share of the cap, so the next batches don't prune again at once.
LOW_WATER = 0.9


@dataclass
class Pruned:
    """What one prune removed."""

    runs: int = 0
    spans: int = 0
    events: int = 0
    feedback: int = 0

    def add(self, other: Pruned) -> None:
        self.runs += other.runs
        self.spans += other.spans
        self.events += other.events
        self.feedback += other.feedback

    def as_dict(self) -> dict[str, int]:
        return {"runs": self.runs, "spans": self.spans, "events": self.events, "feedback": self.feedback}


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file holding data (free pages excluded)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _has_feedback(conn: sqlite3.Connection) -> bool:
    columns = conn.execute("SELECT name FROM pragma_table_info('feedback')").fetchall()
    return any(row[0] == "run_id" for row in columns)


def _delete_runs(conn: sqlite3.Connection, run_ids: list[str]) -> Pruned:
    marks = ",".join("?" * len(run_ids))
    done = Pruned(runs=len(run_ids))
    done.spans = conn.execute(f"DELETE FROM spans WHERE run_id IN ({marks})", run_ids).rowcount
    done.events = conn.execute(f"DELETE FROM events WHERE run_id IN ({marks})", run_ids).rowcount
    if _has_feedback(conn):
        done.feedback = conn.execute(f"DELETE FROM feedback WHERE run_id IN ({marks})", run_ids).rowcount
    conn.execute(f"DELETE FROM push_log WHERE item IN ({marks})", [f"run:{r}" for r in run_ids])
    conn.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", run_ids)
    return done


def _oldest_runs(conn: sqlite3.Connection, before_ns: int | None, limit: int) -> list[str]:
    if before_ns is None:
        rows = conn.execute(
            "SELECT run_id FROM runs ORDER BY COALESCE(start_ns, 0), run_id LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT run_id FROM runs WHERE COALESCE(start_ns, 0) < ? ORDER BY start_ns, run_id LIMIT ?",
            (before_ns, limit),
        ).fetchall()
    return [str(row[0]) for row in rows]


def _prune_chunk(conn: sqlite3.Connection, before_ns: int | None, limit: int) -> Pruned:
    run_ids = _oldest_runs(conn, before_ns, limit)
    done = _delete_runs(conn, run_ids) if run_ids else Pruned()
    if before_ns is not None and not run_ids:
        # Runs are gone: spans outside any run, then events, by their own time.
        done.spans += conn.execute(
            "DELETE FROM spans WHERE rowid IN (SELECT rowid FROM spans WHERE run_id IS NULL AND start_ns < ?"
            " LIMIT ?)",
            (before_ns, limit * 8),
        ).rowcount
        done.events += conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts_ns < ? LIMIT ?)",
            (before_ns, limit * 8),
        ).rowcount
    return done


def _oldest_events(conn: sqlite3.Connection, limit: int) -> Pruned:
    count = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY ts_ns, id LIMIT ?)", (limit,)
    ).rowcount
    return Pruned(events=count)


def prune(write: Write[Any], *, before_ns: int | None = None, max_bytes: int | None = None) -> Pruned:
    """Remove runs started before ``before_ns``, then the oldest runs until the data fits in
    ``max_bytes`` (to :data:`LOW_WATER` of it); each chunk in its own transaction."""
    total = Pruned()
    if before_ns is not None:
        while True:
            done: Pruned = write(lambda conn: _prune_chunk(conn, before_ns, _CHUNK))
            total.add(done)
            if not (done.runs or done.spans or done.events):
                break
    if max_bytes is not None and max_bytes > 0:
        target = int(max_bytes * LOW_WATER)

        def step(conn: sqlite3.Connection) -> Pruned | None:
            used = used_bytes(conn)
            if used <= target:
                return None
            runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            if not runs:
                return _oldest_events(conn, _CHUNK)
            share = (used - target) / used
            limit = max(1, min(_CHUNK, int(runs * share) + 1))
            return _prune_chunk(conn, None, limit)

        while True:
            done_or_none: Pruned | None = write(step)
            if done_or_none is None or not (done_or_none.runs or done_or_none.events):
                break
            total.add(done_or_none)
    if total.runs or total.spans or total.events:
        write(_give_back)
    return total


def _give_back(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        conn.execute("PRAGMA incremental_vacuum").fetchall()


def cutoff_ns(max_age_days: float, now_ns: int | None = None) -> int:
    now = time.time_ns() if now_ns is None else now_ns
    return now - int(max_age_days * NS_PER_DAY)


def vacuum(conn: sqlite3.Connection) -> None:
    """Rewrite the file to its smallest size (outside any transaction); later prunes give space
    back to the disk as they go."""
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
