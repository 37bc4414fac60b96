"""The store's lifecycle: schema migrations, files it must not touch, closing, retention, a burst
that outruns the writer, a locked store and a full disk (real SQLite files, the real runtime, real
threads and processes)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

import trodo_trace as trodo
from trodo_trace._internal import runtime
from trodo_trace._internal.store.local import (
    SCHEMA_VERSION,
    LocalStore,
    LocalStoreExporter,
    StoreNotUnderstood,
    StoreUnavailable,
)

V1_STORE = Path(__file__).parent / "data" / "store_v1.db"
T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9
RESOURCE = Resource({"service.name": "svc-test"})


def run_spans(run_id: str, trace: int, start: int, *, payload: int = 0) -> list[ReadableSpan]:
    """A finished 3-span run (root with rollups, a tool, an llm call) starting at ``start``."""

    def ctx(span_id: int) -> SpanContext:
        return SpanContext(trace, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    base = {"trodo.run.id": run_id, "input.value": "x" * payload}
    root = {
        **base,
        "trodo.span.kind": "run",
        "trodo.agent.name": "agent",
        "trodo.run.status": "ok",
        "trodo.run.span_count": 3,
        "trodo.run.tool_count": 1,
        "trodo.run.error_count": 0,
    }
    return [
        ReadableSpan(
            "tool",
            ctx(2),
            parent=ctx(1),
            resource=RESOURCE,
            attributes={**base, "trodo.span.kind": "tool"},
            status=Status(StatusCode.OK),
            start_time=start + 1,
            end_time=start + 2,
        ),
        ReadableSpan(
            "llm",
            ctx(3),
            parent=ctx(1),
            resource=RESOURCE,
            attributes={**base, "trodo.span.kind": "llm"},
            status=Status(StatusCode.OK),
            start_time=start + 3,
            end_time=start + 4,
        ),
        ReadableSpan(
            "agent",
            ctx(1),
            parent=None,
            resource=RESOURCE,
            attributes=root,
            status=Status(StatusCode.OK),
            start_time=start,
            end_time=start + 5,
        ),
    ]


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# -- schema -------------------------------------------------------------------------------------
def test_store_of_the_previous_release_is_migrated_and_keeps_its_data(tmp_path):
    """A store written by the previous release (schema 1) opens, moves to the current schema, keeps
    every row, and knows which runs have an incomplete cost and which spans joined from elsewhere."""
    path = tmp_path / "old.db"
    shutil.copy(V1_STORE, path)
    assert _version(path) == 1
    with LocalStore(path) as store:
        parent = store.get_run("run-v1-parent")
        assert parent is not None
        assert (parent["name"], parent["cost"], parent["cost_incomplete"]) == ("planner", None, True)
        assert parent["span_count"] == 3  # 2 of its process + 1 joined from svc-remote
        assert [r["run_id"] for r in store.sub_runs("run-v1-parent")] == ["run-v1-child"]
        assert store.get_run("run-v1-child")["cost_incomplete"] is False
        assert [s["name"] for s in store.get_spans("run-v1-parent")] == [
            "planner",
            "call-model",
            "remote-tool",
        ]
        assert [e["name"] for e in store.list_events()] == ["signup"]
    assert _version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        joined = conn.execute("SELECT name FROM spans WHERE joined = 1").fetchall()
    finally:
        conn.close()
    assert joined == [("remote-tool",)]


def test_new_store_has_the_current_schema_version(tmp_path):
    with LocalStore(tmp_path / "new.db") as store:
        store.open()
    assert _version(tmp_path / "new.db") == SCHEMA_VERSION


def test_store_from_a_newer_release_is_refused_untouched(tmp_path):
    """A schema newer than this release: a clear error, and not a byte of the file changes."""
    path = tmp_path / "future.db"
    shutil.copy(V1_STORE, path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    store = LocalStore(path)
    with pytest.raises(
        StoreNotUnderstood,
        match=rf"newer trodo_trace \(schema {SCHEMA_VERSION + 5}; this release reads up to {SCHEMA_VERSION}\)",
    ):
        store.open()
    store.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not Path(f"{path}-wal").exists()


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(
        StoreNotUnderstood, match=r"app\.db is an SQLite database but not a trodo_trace store"
    ):
        LocalStore(path).open()
    assert path.read_bytes() == before
    assert isinstance(StoreNotUnderstood("x"), StoreUnavailable)


# -- closing --------------------------------------------------------------------------------------
def test_store_used_after_close_leaves_no_connection_open(tmp_path):
    """Reads and writes after close() work on a connection of their own, closed again at once: the
    garbage collector never finds an unclosed database (Python 3.13 warns about one)."""
    store = LocalStore(tmp_path / "t.db")
    store.write_events([{"dedup_key": "a", "ts_ns": T0, "name": "first"}])
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.write_events([{"dedup_key": "b", "ts_ns": T0 + 1, "name": "second"}])
        assert [e["name"] for e in store.list_events()] == ["second", "first"]
        assert store._conn is None
        store.close()


# -- retention -----------------------------------------------------------------------------------
def _fill(store: LocalStore, runs: int, *, start: int = T0, step: int = DAY, payload: int = 0) -> list[str]:
    ids = []
    for index in range(runs):
        run_id = f"run-{index:04d}"
        ids.append(run_id)
        store.export_spans(run_spans(run_id, index + 1, start + index * step, payload=payload))
        store.write_events(
            [{"dedup_key": f"e-{run_id}", "ts_ns": start + index * step, "name": "step", "run_id": run_id}]
        )
    return ids


def test_prune_before_removes_whole_oldest_runs_with_spans_events_and_feedback(tmp_path):
    store = LocalStore(tmp_path / "t.db")
    ids = _fill(store, 5)
    conn = store.open()
    # The dashboard's feedback table (its own module creates it): rows of pruned runs go too.
    conn.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, run_id TEXT, score REAL)")
    conn.executemany("INSERT INTO feedback (run_id, score) VALUES (?, 1.0)", [(i,) for i in ids])
    removed = store.prune(before_ns=T0 + 2 * DAY)
    assert removed == {"runs": 2, "spans": 6, "events": 2, "feedback": 2}
    assert [r["run_id"] for r in store.list_runs(limit=None)] == ["run-0004", "run-0003", "run-0002"]
    assert store.get_spans("run-0000") == []
    assert {e["run_id"] for e in store.list_events()} == {"run-0002", "run-0003", "run-0004"}
    assert [row[0] for row in conn.execute("SELECT run_id FROM feedback ORDER BY run_id")] == ids[2:]
    store.close()


def test_prune_to_size_keeps_the_newest_runs_under_the_cap(tmp_path):
    store = LocalStore(tmp_path / "t.db")
    _fill(store, 60, step=1000, payload=4000)
    before = store.size_bytes()
    cap = before // 3
    removed = store.prune(max_bytes=cap)
    assert store.size_bytes() <= cap
    kept = [r["run_id"] for r in store.list_runs(limit=None)]
    assert removed["runs"] == 60 - len(kept) > 0
    assert kept == [f"run-{i:04d}" for i in range(59, 59 - len(kept), -1)]  # the newest, contiguous
    for run_id in kept:
        assert len(store.get_spans(run_id)) == 3  # whole runs only
    store.close()


def test_exporter_prunes_on_its_own_thread_by_age(tmp_path):
    """store_max_age_days applies after a write on the exporting thread (here: the caller)."""
    store = LocalStore(tmp_path / "t.db")
    _fill(store, 3, start=T0)  # years ago
    exporter = LocalStoreExporter(store, max_age_days=30)
    import time as _time

    now = _time.time_ns()
    exporter.export(run_spans("fresh", 99, now))
    assert [r["run_id"] for r in store.list_runs(limit=None)] == ["fresh"]
    assert exporter.pruned.runs == 3
    exporter.shutdown()


def test_retention_options_resolve_from_arguments_and_environment(monkeypatch):
    from trodo_trace._internal.config import resolve

    config = resolve({}, environ={})
    assert (config.store_max_bytes, config.store_max_age_days) == (1024**3, None)
    config = resolve({}, environ={"TRODO_STORE_MAX_BYTES": "5000000", "TRODO_STORE_MAX_AGE_DAYS": "7.5"})
    assert (config.store_max_bytes, config.store_max_age_days) == (5_000_000, 7.5)
    assert resolve({"store_max_age_days": 2}, environ={}).store_max_age_days == 2.0
    with pytest.raises(ValueError, match="store_max_age_days must be a positive number of days"):
        resolve({"store_max_age_days": 0}, environ={})
    with pytest.raises(ValueError, match="store_max_bytes must be >= 0"):
        resolve({"store_max_bytes": -1}, environ={})


# -- no drops ------------------------------------------------------------------------------------
@pytest.mark.serial  # a bounded wait (flush) after loading the machine with four threads
def test_burst_that_outruns_the_writer_spills_to_the_spool_and_every_span_is_stored(tmp_path):
    """The store is locked by another connection while 4 threads end 2,400 spans into a 64-span
    queue: the overflow waits in the spool, and after flush() every span is in the store."""
    path = tmp_path / "burst.db"
    trodo.init(store_path=str(path), max_queue_size=64, max_export_batch_size=64, schedule_delay_ms=50)
    with LocalStore(path) as created:  # create it, then hold its write lock
        created.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    def work(worker: int) -> None:
        for _index in range(200):
            trodo.wrap_agent(
                f"burst-{worker}",
                lambda run: [trodo.tool("a")(len)("x"), trodo.tool("b")(len)("yy")],
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = trodo.stats()
    assert stats["spooled"] > 0
    blocker.execute("ROLLBACK")
    blocker.close()
    assert trodo.flush(timeout=60)
    stats = trodo.stats()
    assert stats["dropped"] == 0 and stats["failed"] == 0
    assert stats["exported"] == stats["ended"] == 2400
    with LocalStore(path) as store:
        runs = store.list_runs(limit=None)
        assert len(runs) == 800
        assert sum(r["span_count"] for r in runs) == 2400
        count = store._query("SELECT COUNT(*) FROM spans")[0][0]
    assert count == 2400
    spool_dir = runtime.get().store_spill.spool.directory
    assert not list(spool_dir.glob("*.otlp"))


@pytest.mark.serial  # a bounded wait on another connection's lock
def test_flush_waits_for_a_locked_store_and_stats_count_every_waiting_span(tmp_path):
    """Spans overflowing the queue while another connection holds the store's write lock for 4 s:
    stats() counts every one while they wait, and flush() waits for the lock (unlike a full disk)
    and stores them all."""
    path = tmp_path / "locked.db"
    trodo.init(store_path=str(path), max_queue_size=16, max_export_batch_size=16, schedule_delay_ms=20)
    with LocalStore(path) as created:
        created.open()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(4.0, lambda: (blocker.execute("ROLLBACK"), blocker.close()))
    try:
        for _index in range(100):
            trodo.wrap_agent("locked", lambda run: trodo.tool("t")(len)("x"))
        # Queued, in flight, held by the spill or spooled: once the spill thread has had its turn,
        # every waiting span is counted somewhere.
        deadline = time.monotonic() + 3.0
        while True:
            waiting = trodo.stats()
            counted = waiting["queue_depth"] + waiting["in_flight"] + waiting["spooled"]
            if counted == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        release.start()
        assert waiting["exported"] == 0 and counted == 200, waiting
        assert trodo.flush(timeout=60)
    finally:
        if not release.is_alive() and not release.finished.is_set():
            release.start()
        release.join()
    stats = trodo.stats()
    assert stats["exported"] == stats["ended"] == 200 and stats["failed"] == stats["dropped"] == 0
    with LocalStore(path) as store:
        assert store._query("SELECT COUNT(*) FROM spans")[0][0] == 200


FULL_DISK_SCRIPT = r"""
import glob, json, os, resource, signal, sys, time
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) as on a full disk
import trodo_trace as trodo

store = sys.argv[1]
trodo.init(store_path=store)

@trodo.tool
def lookup(i):
    return "y" * 2000

@trodo.agent("writer")
def writer(i):
    for _ in range(5):
        lookup(i)
    return "ok"

writer(0)
before = trodo.flush(10)
limit = max(os.path.getsize(p) for p in glob.glob(store + "*")) + 100_000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # no file of this process grows past it
for i in range(1, 2001):
    writer(i)
started = time.monotonic()
after = trodo.flush(30)
waited = time.monotonic() - started
print(json.dumps({"before": before, "after": after, "waited": waited, "stats": trodo.stats()}))
"""


AFTER_FULL_DISK_SCRIPT = r"""
import sys
import trodo_trace as trodo

trodo.init(store_path=sys.argv[1])
print(trodo.flush(30))
"""


@pytest.mark.serial  # asserts that flush() ends before its deadline
def test_a_full_disk_costs_spans_counted_and_said_once_and_leaves_the_store_readable(tmp_path):
    """Every write of the store and of the spool fails (a real process whose files may not grow,
    a real SQLite file): the app keeps running, flush() says False, every span is counted (failed or
    dropped), the log says so once instead of once a batch, and the store stays whole. What did reach
    the spool before its files stopped growing is stored by the next process on the store, and
    flush() returns False when the writes fail instead of retrying them until its deadline."""
    store = tmp_path / ".trodo" / "trodo.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, str(store)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )

    done = run(FULL_DISK_SCRIPT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stats = result["stats"]
    assert result["before"] is True and result["after"] is False
    assert result["waited"] < 20, result  # the failure ends flush(30): no wait for a disk to empty
    assert stats["ended"] == 6 * 2001, stats
    assert stats["failed"] + stats["dropped"] > 6 * 1000, stats
    assert stats["queue_depth"] == stats["in_flight"] == 0, stats
    lost_lines = [line for line in done.stderr.splitlines() if "could neither be spooled nor stored" in line]
    failed_lines = [
        line for line in done.stderr.splitlines() if "could not write spans to the local store" in line
    ]
    assert len(lost_lines) <= 1 and len(failed_lines) <= 1, done.stderr
    assert lost_lines or failed_lines, done.stderr
    later = run(AFTER_FULL_DISK_SCRIPT)
    assert later.returncode == 0 and later.stdout.strip() == "True", later.stderr
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        first = conn.execute("SELECT span_count FROM runs WHERE name = 'writer' ORDER BY start_ns LIMIT 1")
        assert first.fetchone() == (6,)
        # Every span is in the store, or was counted as failed or dropped: none is unaccounted for.
        stored = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    finally:
        conn.close()
    assert stored == stats["ended"] - stats["failed"] - stats["dropped"], (stored, stats)
