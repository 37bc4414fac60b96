"""Embedded SQLite store for finished spans, run summaries and product events.

The store is a single SQLite file (WAL mode) that several processes may write at once. Inside one
process, writes come from the exporter thread and reads from the CLI or other displays; one
connection guarded by a lock serves both. The rooms: :mod:`.schema` (version and migrations),
:mod:`.writer` (rows and batched writes), :mod:`.queries` (reads), :mod:`.retention` (pruning),
:mod:`.spill` (what the writer cannot take yet waits in the disk spool).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import default_store_path
from . import retention, schema, writer
from .queries import Queries
from .schema import SCHEMA_VERSION, StoreNotUnderstood, StoreUnavailable

__all__ = [
    "DATA_ERRORS",
    "SCHEMA_VERSION",
    "LocalStore",
    "LocalStoreExporter",
    "StoreNotUnderstood",
    "StoreUnavailable",
    "each_alone",
    "is_lock_error",
]

logger = logging.getLogger("trodo_trace.store")

_LOCK_RETRIES = 6
#: Page size of a new store file, the connection's page cache (KiB) and how many WAL pages a
#: checkpoint waits for (measured with ``bench/store_write.py``).
PAGE_SIZE = 8192
CACHE_KIB = 16384
WAL_CHECKPOINT_PAGES = 2000
T = TypeVar("T")


def is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class LocalStore(Queries):
    """A SQLite file holding spans, runs and events; opened lazily on first use.

    After :meth:`close`, a further call works on a connection of its own that it closes again, so
    a store used after close never leaves a connection behind.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = pathlib.Path(path)
        self._create = create
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    def __del__(self) -> None:
        # A store dropped without close(): close its connection here rather than leave it to the
        # garbage collector (which warns about an unclosed database on Python 3.13).
        conn = getattr(self, "_conn", None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------

    def open(self) -> sqlite3.Connection:
        """Open (creating if allowed) the database file and its schema; idempotent."""
        with self._lock:
            self._closed = False
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The shared connection, or after :meth:`close` a short-lived one (held with the lock)."""
        with self._lock:
            if not self._closed:
                yield self.open()
                return
            conn = self._connect()
            try:
                yield conn
            finally:
                conn.close()

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
            opened = conn
            conn.execute("PRAGMA busy_timeout=30000")
            schema.check(conn, path)  # before any write: a newer or foreign file stays untouched
            self._retry(lambda: self._init_schema(opened))
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, StoreUnavailable):
                raise
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreUnavailable(f"local store {path} is unavailable: {exc}") from exc
            raise
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # 8 KiB pages hold several span rows each (a new file only: ignored once it has content).
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # The indexes on run ids take a page per run written: a cache that holds them and a WAL
        # checkpointed every ~16 MiB rather than 4 MiB copy each page back fewer times.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        schema.migrate(conn, self.path, create=self._create)

    def close(self) -> None:
        """Close the connection; a later call uses a connection of its own (see the class)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    @staticmethod
    def _retry(action: Callable[[], T]) -> T:
        for attempt in range(_LOCK_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not is_lock_error(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(0.05 * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one write transaction (retried while another process holds the lock)."""
        with self._connection() as conn:

            def attempt() -> T:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

            return self._retry(attempt)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._connection() as conn:

            def run() -> list[sqlite3.Row]:
                cursor = conn.cursor()
                cursor.row_factory = sqlite3.Row
                try:
                    return cursor.execute(sql, tuple(params)).fetchall()
                finally:
                    cursor.close()

            return self._retry(run)

    # -- writes ---------------------------------------------------------------------------

    def export_spans(self, spans: Sequence[Any], resource: Any = None) -> None:
        """Write finished spans (and the runs their roots summarise) in one transaction: SDK spans,
        or our own spans as they are (``resource``: the process's resource)."""
        self.write_batch(writer.prepare(spans, resource))

    def write_batch(self, batch: writer.Batch) -> None:
        """Write prepared rows (:func:`.writer.prepare`) in one transaction."""
        if len(batch):
            self._write(lambda conn: writer.write(conn, batch))

    def write_events(self, rows: list[dict[str, Any]]) -> None:
        """Insert product events; a row whose ``dedup_key`` is already stored is skipped."""
        values = writer.event_values(rows)
        if values:
            self._write(lambda conn: conn.executemany(writer.INSERT_EVENT, values))

    # -- retention ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes holding data (the file may be larger until ``vacuum()``)."""
        with self._connection() as conn:
            return retention.used_bytes(conn)

    def prune(self, *, before_ns: int | None = None, max_bytes: int | None = None) -> dict[str, int]:
        """Remove whole runs (with their spans, events and feedback) that started before
        ``before_ns``, then the oldest ones until the data fits in ``max_bytes``; what was removed."""
        return retention.prune(self._write, before_ns=before_ns, max_bytes=max_bytes).as_dict()

    def vacuum(self) -> None:
        """Rewrite the file to its smallest size."""
        with self._connection() as conn:
            self._retry(lambda: retention.vacuum(conn))

    # -- push cursor ----------------------------------------------------------------------

    def pushed(self, destination: str, items: Sequence[str]) -> set[str]:
        """Which of ``items`` were already pushed to ``destination``."""
        found: set[str] = set()
        for start in range(0, len(items), 500):
            chunk = list(items[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT item FROM push_log WHERE destination = ? AND item IN ({marks})",
                [destination, *chunk],
            )
            found.update(row["item"] for row in rows)
        return found

    def mark_pushed(self, destination: str, items: Sequence[str]) -> None:
        """Record ``items`` as delivered to ``destination``."""
        now = time.time_ns()
        rows = [(destination, item, now) for item in items]
        if rows:
            self._write(
                lambda conn: conn.executemany(
                    "INSERT OR REPLACE INTO push_log (destination, item, pushed_ns) VALUES (?, ?, ?)", rows
                )
            )


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
    """Span exporter writing to a :class:`LocalStore`; never raises, logs the first failure.

    With ``max_bytes`` / ``max_age_days`` it prunes the store after a write (on the export thread,
    never the application's) at most every ``retention_interval_s`` seconds.
    """

    def __init__(
        self,
        store: LocalStore | str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 0,
        max_age_days: float | None = None,
        retention_interval_s: float = 30.0,
        resource: Any = None,
    ) -> None:
        if store is None:
            store = LocalStore(default_store_path())
        elif not isinstance(store, LocalStore):
            store = LocalStore(store)
        self.store = store
        #: The resource of our own spans, which the pipeline hands over unconverted.
        self.resource = resource
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self.retention_interval_s = retention_interval_s
        self._next_retention = 0.0
        self.pruned = retention.Pruned()
        self._failure_logged = False
        self._shut_down = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult | int:  # type: ignore[override]
        """Write ``spans`` (SDK spans, or ours as they are); a span whose data cannot be stored is dropped alone: then the number
        of spans lost is returned (the pipeline counts them as failed, the rest as exported)."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        resource = self.resource
        try:
            self.store.export_spans(spans, resource)
        except DATA_ERRORS:
            return each_alone(lambda one: self.store.export_spans(one, resource), spans, "spans")
        except Exception as exc:
            self._log_failure(exc)
            return SpanExportResult.FAILURE
        self.retain()
        return SpanExportResult.SUCCESS

    def _log_failure(self, exc: Exception) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            logger.warning("trodo_trace: could not write spans to the local store: %s", exc)

    def retain(self, *, force: bool = False) -> None:
        """Apply the retention options if they are due (every ``retention_interval_s``)."""
        if not self.max_bytes and self.max_age_days is None:
            return
        now = time.monotonic()
        if not force and now < self._next_retention:
            return
        self._next_retention = now + self.retention_interval_s
        before = retention.cutoff_ns(self.max_age_days) if self.max_age_days is not None else None
        try:
            done = retention.prune(self.store._write, before_ns=before, max_bytes=self.max_bytes or None)
        except Exception as exc:  # retention never costs a batch
            logger.warning("trodo_trace: could not prune the local store: %s", exc)
            return
        self.pruned.add(done)
        if done.runs or done.events:
            logger.info("trodo_trace: local store retention removed %s", done.as_dict())

    def shutdown(self) -> None:
        self._shut_down = True
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
