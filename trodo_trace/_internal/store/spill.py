"""What the store writer cannot take yet waits in the disk spool, and is written later: no drops.

When spans end faster than the writer stores them and the export queue is full, the pipeline hands
each further span to :meth:`StoreSpill.overflow` (application thread, O(1)): a spill thread turns
them into rows and writes them to the spool as JSON batches (signal ``traces``, in a directory of
this store's own under ``spool/``). The export worker writes spooled batches into the store when it
is idle, ``flush()`` and shutdown write what is left, and a process that starts on the same store
later finishes what an earlier one left behind.

The spool is given (an object with ``put``, ``files`` and ``claim``: :class:`..export.spool.Spool`).
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .local import DATA_ERRORS, LocalStore, is_lock_error
from .writer import Batch, prepare

logger = logging.getLogger("trodo_trace.store")

SIGNAL = "traces"
#: While spans keep being lost (the disk is full, say), the warning repeats at most this often.
LOSS_WARNING_INTERVAL_S = 60.0


class Replay(enum.Enum):
    """How a :meth:`StoreSpill.replay` ended."""

    DONE = "done"
    AGAIN = "again"
    FAILED = "failed"


class StoreSpill:
    """Overflow of the store's export pipeline, through the disk spool and back into the store."""

    def __init__(
        self,
        store: LocalStore,
        spool: Any,
        convert: Callable[[list[Any]], list[Any]],
        *,
        batch_size: int = 512,
        max_buffer: int = 65536,
        replay_budget_s: float = 0.25,
        resource: Any = None,
    ) -> None:
        self.store = store
        self.resource = resource  # of our own spans, which ``convert`` leaves as they are
        self.spool = spool
        self._convert = convert
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        self._replay_budget_s = replay_budget_s
        self._init_state()

    def _init_state(self) -> None:
        self._buffer: deque[Any] = deque()
        self._wake = threading.Event()
        self._spill_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._next_scan = 0.0
        self.spooled = 0
        self.replayed = 0
        self.written_direct = 0
        self.dropped = 0
        self._warned_at: float | None = None  # the last loss warning (monotonic seconds)
        self._unwarned = 0  # spans lost since then, not yet in a warning

    def after_fork_in_child(self) -> None:
        self._init_state()
        renew = getattr(self.spool, "after_fork_in_child", None)
        if renew is not None:  # the child's files carry its own mark (the spool's name format)
            renew(f"{os.getpid():x}x{secrets.token_hex(4)}")

    def pipeline_hooks(self) -> dict[str, Any]:
        """Keyword arguments for the store's :class:`~..export.pipeline.Pipeline`."""
        return {"overflow": self.overflow, "on_idle": self.idle, "abandon": self.abandon}

    # -- application thread ------------------------------------------------------------------
    def overflow(self, item: Any) -> bool:
        """Take a span the queue has no room for; past ``max_buffer`` the caller spools a batch
        itself (backpressure instead of a drop)."""
        if self._stopping:
            return False
        if len(self._buffer) >= self._max_buffer:
            self._spill(once=True)
        self._buffer.append(item)
        if self._thread is None:
            self._start()
        if len(self._buffer) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="trodo-store-spill", daemon=True)
            self._thread = thread
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: the flush at exit spills
                pass

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(0.2)
            self._wake.clear()
            self._spill()

    def _take(self) -> list[Any]:
        batch: list[Any] = []
        popleft = self._buffer.popleft
        try:
            while len(batch) < self._batch_size:
                batch.append(popleft())
        except IndexError:
            pass
        return batch

    def _spill(self, once: bool = False) -> None:
        """Spool buffered spans in batches (the last spill thread round, or one batch for ``once``)."""
        while self._buffer:
            with self._spill_lock:
                items = self._take()
                if items:
                    self._put(items)
            if once:
                return

    def _put(self, items: list[Any]) -> None:
        try:
            batch = prepare(self._convert(items), self.resource)
        except Exception:
            batch = Batch()
            for item in items:
                try:
                    one = prepare(self._convert([item]), self.resource)
                except Exception:
                    self.dropped += 1
                    continue
                batch.spans += one.spans
                batch.runs += one.runs
                batch.fallback_runs += one.fallback_runs
                batch.joined_runs |= one.joined_runs
        if not len(batch):
            return
        try:
            if self.spool.put(SIGNAL, batch.to_json(), len(batch)):
                self.spooled += len(batch)
                return
        except (OSError, ValueError, TypeError):
            pass
        # The spool is full or unwritable: write now (slower for the caller, but nothing is lost).
        try:
            self.store.write_batch(batch)
            self.written_direct += len(batch)
        except Exception as exc:
            self.dropped += len(batch)
            self._warn_lost(len(batch), exc)

    def _warn_lost(self, count: int, exc: Exception) -> None:
        """One warning at the first loss, then at most one a minute with the count since (a full
        disk fails every batch: the log says so once a minute, ``stats()`` counts every span)."""
        self._unwarned += count
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < LOSS_WARNING_INTERVAL_S:
            return
        self._warned_at = now
        logger.warning(
            "trodo_trace: %d spans could neither be spooled nor stored (%d in all): %s",
            self._unwarned,
            self.dropped,
            exc,
        )
        self._unwarned = 0

    # -- export worker -----------------------------------------------------------------------
    def idle(self) -> None:
        """Write spooled batches into the store for a short while (the worker's idle time); the
        directory is looked at every few seconds, or at once when this process spooled something."""
        now = time.monotonic()
        if not self.spool.has_files() and now < self._next_scan:
            return
        self._next_scan = now + 5.0
        self.replay(now + self._replay_budget_s)

    def replay(self, deadline: float) -> Replay:
        """Write spooled batches into the store until ``deadline``: ``DONE`` when none is left,
        ``AGAIN`` when some are (a deadline, a file another writer holds, a locked store),
        ``FAILED`` when the store could not take one for another reason (a full disk, say)."""
        try:
            files = [entry for entry in self.spool.files() if entry.signal == SIGNAL]
        except OSError:
            return Replay.AGAIN
        left = False
        for entry in files:
            if time.monotonic() >= deadline:
                return Replay.AGAIN
            with self.spool.claim(entry) as claim:
                if claim is None:
                    left = left or entry.path.exists()  # another thread or process is writing it
                    continue
                try:
                    batch = Batch.from_json(claim.body)
                except (ValueError, TypeError):
                    logger.warning("trodo_trace: unreadable spooled batch %s removed", entry.path.name)
                    claim.delete()
                    continue
                try:
                    self.store.write_batch(batch)
                except DATA_ERRORS:
                    claim.delete()
                    self.dropped += len(batch)
                    continue
                except Exception as exc:  # the file stays for later
                    locked = isinstance(exc, sqlite3.OperationalError) and is_lock_error(exc)
                    return Replay.AGAIN if locked else Replay.FAILED
                claim.delete()
                self.replayed += len(batch)
        return Replay.AGAIN if left else Replay.DONE

    def abandon(self, items: Sequence[Any]) -> None:
        """Shutdown leftovers of the pipeline: spooled, for the next process on this store."""
        self._buffer.extend(items)
        self._spill()

    # -- runtime extension -------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Spool what is buffered, then write the spool into the store (calling thread)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self._spill()
        # A store locked by another process past the writer's retries is waited for; any other
        # failure (a full disk) ends the flush at once.
        while (state := self.replay(deadline)) is not Replay.DONE:
            if state is Replay.FAILED or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def shutdown(self, timeout: float) -> None:
        self.flush(timeout)
        self._stopping = True
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {
            "spooled": self.spooled,
            "exported": self.replayed + self.written_direct,
            "dropped": self.dropped,
        }
