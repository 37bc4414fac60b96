"""The export pipeline: an O(1) hand-off on the application thread, one worker thread behind it.

``submit`` appends to a deque (no lock, no I/O) and wakes the worker only when a batch is full.
The worker converts and exports in batches by size and interval; ``flush`` and ``shutdown`` wait
for it with a deadline, never longer.

Optional hooks let an exporter take what the queue cannot: ``overflow(item) -> bool`` when the queue
is full (application thread: must be O(1)), ``on_idle()`` on the worker after each round (e.g. to
send a disk spool), and ``abandon(items)`` at shutdown for what the worker did not finish in time.

One bad item never costs its batch: when ``convert`` fails on a batch, the items are converted one
by one and only those that fail are dropped (counted as ``failed``); an ``export`` may return an
``int``, the number of items of the batch it could not take (the rest were exported).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..core.counter import Counter
from ..core.errors import internal_error, log_once

logger = logging.getLogger("trodo_trace")


class Pipeline:
    """Queue + worker for one exporter."""

    def __init__(
        self,
        export: Callable[[Sequence[Any]], Any],
        *,
        convert: Callable[[list[Any]], list[Any]] = list,
        batch_size: int = 512,
        interval_s: float = 1.0,
        max_queue: int = 65536,
        overflow: Callable[[Any], bool] | None = None,
        on_shutdown: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        abandon: Callable[[list[Any]], None] | None = None,
        name: str = "trodo-export",
        size: Callable[[Any], int] | None = None,
        max_bytes: int = 0,
        max_item_bytes: int = 0,
    ):
        self._export = export
        self._convert = convert
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_queue = max_queue
        self._overflow = overflow
        self._on_shutdown = on_shutdown
        self._on_idle = on_idle
        self._abandon = abandon
        self._name = name
        #: Memory bound in bytes (with ``size``, an estimate of an item's bytes): past it, items take
        #: the overflow path (the spool) as past ``max_queue``. Approximate: the app-thread side is
        #: not locked. With ``max_item_bytes`` (what ``size`` can return at most) the first items of
        #: a short queue are not measured at all, so the application thread pays for the byte bound
        #: only when the queue is backing up; the measured rest (their sizes kept beside the queue,
        #: released by the worker as it takes them) is held to what remains of the bound (see
        #: ``_byte_plan``).
        self._size = size if max_bytes > 0 else None
        self._max_bytes = max_bytes
        self._unmeasured, self._byte_budget = _byte_plan(max_bytes, max_item_bytes)
        if self._size is None:
            self._unmeasured = max_queue + 1  # never measure
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Any] = deque()
        self._bytes_in = 0
        self._bytes_out = 0
        #: Measured items: their bytes and their place in the stream of submitted items.
        self._measured_bytes: deque[int] = deque()
        self._measured_at: deque[int] = deque()
        self._popped = 0
        self._wake = threading.Event()
        self._done = threading.Condition(threading.Lock())
        self._submitted = Counter()
        self._dropped = Counter()
        self._overflowed = Counter()
        self._processed = 0
        self._in_flight = 0
        self._abandoned = 0
        self.exported = 0
        self.failed = 0
        #: Items dropped alone (conversion or a per-item export failure); included in ``failed``.
        self.lost = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._stopped = False
        self._handed_over = False
        #: No worker thread could be started (the interpreter is shutting down: Python 3.12+ refuses
        #: new threads then, e.g. for the first span of a thread that outlives the main thread), so
        #: flush() and shutdown() export in the calling thread instead.
        self._inline = False
        #: ``Thread.start()`` raised ``RecursionError`` (the first item was submitted at the recursion
        #: limit): it waits for the new thread in Python code, so the thread may or may not exist. The
        #: worker clears this when it runs; flush() starts another if it never does.
        self._unconfirmed = False

    def after_fork_in_child(self) -> None:
        """The parent exports what it had queued; the child starts empty with a new worker."""
        self._reset()

    # -- application thread ------------------------------------------------------------------
    def submit(self, item: Any) -> None:
        queue = self._queue
        depth = len(queue)
        over = depth >= self._max_queue or self._stopped
        if depth >= self._unmeasured and not over:  # a queue backing up: measure what joins it
            nbytes = self._size(item)  # type: ignore[misc]  # set whenever items are measured
            over = self._bytes_in - self._bytes_out + nbytes > self._byte_budget
            if not over:
                self._bytes_in += nbytes
                # Where the item stands in the stream (at or after its true place when the worker
                # pops meanwhile), so the worker releases these bytes once it has taken it.
                self._measured_bytes.append(nbytes)
                self._measured_at.append(depth + self._popped)
        if over:
            self._overflowed.increment()
            if self._overflow is None or not self._overflow(item):
                self._dropped.increment()
                if self._stopped:
                    log_once(
                        "stopped:" + self._name,
                        "trodo_trace: tracing was shut down (shutdown() or interpreter exit); "
                        "spans and events after it are dropped: call init() to trace again",
                    )
                else:
                    log_once(
                        "queue-full:" + self._name,
                        "trodo_trace: export queue full (%d); items are being dropped",
                        self._max_queue,
                    )
            return
        queue.append(item)
        self._submitted.increment()
        if self._thread is None and not self._inline:
            self._start()
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._unconfirmed = True  # before start(): the new worker clears it as it begins
            try:
                thread.start()
            except RecursionError:  # maybe after the thread was spawned: see _confirm_started()
                pass
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._unconfirmed = False
                self._inline = True
                return
            else:
                self._unconfirmed = False
            self._thread = thread

    def _confirm_started(self) -> None:
        """After a start that raised at the recursion limit: wait (at most a second) for that worker
        to run, and start another when it never does. Two workers never drain the same queue."""
        deadline = time.monotonic() + 1.0
        while self._unconfirmed and time.monotonic() < deadline:
            time.sleep(0.002)
        with self._start_lock:
            if not self._unconfirmed:
                return
            self._unconfirmed = False
            self._thread = None
        self._start()

    def ensure_started(self) -> None:
        """Start the worker now (it otherwise starts with the first item)."""
        if self._thread is None and not self._stopped:
            self._start()

    def wake(self) -> bool:
        """Wake the worker for an idle round; ``False`` when no worker is running."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stopping:
            return False
        self._wake.set()
        return True

    # -- worker ------------------------------------------------------------------------------
    def _run(self) -> None:
        self._unconfirmed = False
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                break
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:
                    internal_error("export idle")
        if self._on_shutdown is not None:
            try:
                self._on_shutdown()
            except Exception:
                internal_error("exporter shutdown")

    def _drain(self, deadline: float | None = None) -> None:
        queue = self._queue
        while queue and (deadline is None or time.monotonic() < deadline):
            batch: list[Any] = []
            popleft = queue.popleft
            try:
                while len(batch) < self._batch_size:
                    batch.append(popleft())
            except IndexError:
                pass
            self._release(len(batch))
            self._in_flight = len(batch)
            ok = False
            lost = 0
            try:
                converted = self._convert_isolated(batch)
                lost = len(batch) - len(converted)
                result = self._export(converted) if converted else None
                if type(result) is int:  # the number of items the export could not take
                    lost += result
                    result = True
                ok = (
                    result is None or result is True or getattr(result, "name", None) == "SUCCESS"
                )  # SpanExportResult
                if not ok:
                    self.last_error = getattr(result, "name", str(result))
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log_once("export-exc:" + self._name, "trodo_trace: export failed: %s", self.last_error)
            with self._done:
                if ok:
                    self.exported += len(batch) - lost
                    self.failed += lost
                else:
                    self.failed += len(batch)
                self.lost += lost
                self._processed += len(batch)
                self._in_flight = 0
                self._done.notify_all()

    def _release(self, count: int) -> None:
        """``count`` more items left the queue (worker side): release the bytes of the measured
        ones among them."""
        self._popped += count
        measured_at = self._measured_at
        if not measured_at:
            return
        sizes, popped, released = self._measured_bytes, self._popped, 0
        while measured_at and measured_at[0] < popped:
            measured_at.popleft()
            released += sizes.popleft()
        self._bytes_out += released

    def _convert_isolated(self, batch: list[Any]) -> list[Any]:
        """``convert(batch)``; if that fails, item by item, dropping only the items that fail."""
        try:
            return self._convert(batch)
        except Exception:
            if len(batch) == 1:
                log_once("convert:" + self._name, "trodo_trace: an item could not be converted; dropped")
                return []
        out: list[Any] = []
        for item in batch:
            try:
                out.extend(self._convert([item]))
            except Exception:
                log_once("convert:" + self._name, "trodo_trace: an item could not be converted; dropped")
        return out

    # -- control -----------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is processed; ``True`` if it was all exported."""
        target = self._submitted.value
        failed_before = self.failed
        if self._unconfirmed:
            self._confirm_started()
        if self._thread is None:
            if target == 0:
                return True
            if not self._inline:
                self._start()
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._inline:
            self._drain(deadline)
            return self._processed >= target and self.failed == failed_before
        self._wake.set()
        with self._done:
            while self._processed < target:
                if self._handed_over:  # shut down: what was left went to the abandon hook
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(min(remaining, 0.05))
                self._wake.set()
        return self.failed == failed_before

    def pending(self) -> bool:
        """Whether submitted items are still queued or being exported."""
        return self._processed < self._submitted.value and not self._handed_over

    def shutdown(self, timeout: float, reserve: float | None = None) -> bool:
        """Flush within ``timeout``, then stop the worker (without waiting past the deadline).

        With an ``abandon`` hook, the last ``reserve`` seconds (default: a quarter of the time, at
        most 1 s) are kept for it: what the worker has not finished by then is handed over (the
        queue's rest) and the worker is left to die with the process.
        """
        timeout = max(timeout, 0.0)
        if self._handed_over:
            return False
        deadline = time.monotonic() + timeout
        if self._abandon is None:
            reserve = 0.0
        elif reserve is None:
            reserve = min(0.25 * timeout, 1.0)
        reserve = min(max(reserve, 0.0), timeout)
        flushed = self.flush(timeout - reserve)
        self._stopping = True
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - reserve / 2 - time.monotonic()))
        elif thread is None and self._on_shutdown is not None:
            self._on_shutdown()
        if self._abandon is not None and (self._queue or (thread is not None and thread.is_alive())):
            leftovers = []
            try:
                while True:
                    leftovers.append(self._queue.popleft())
            except IndexError:
                pass
            self._release(len(leftovers))
            self._abandoned += len(leftovers)
            self._handed_over = True
            self._in_flight = 0  # the batch being sent is handed over too (the abandon hook spools it)
            try:
                self._abandon(leftovers)
            except Exception:
                internal_error("export abandon")
            flushed = False
        return flushed

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self._submitted.value,
            "exported": self.exported,
            "failed": self.failed,
            "overflowed": self._overflowed.value,
            "dropped": self._dropped.value,
            "queue_depth": len(self._queue),
            "queue_bytes": max(0, self._bytes_in - self._bytes_out),
            "in_flight": self._in_flight,
            "abandoned": self._abandoned,
            "lost": self.lost,
            "last_error": self.last_error,
        }


def _byte_plan(max_bytes: int, max_item_bytes: int) -> tuple[int, int]:
    """``(unmeasured items, budget in bytes for the measured ones)`` within ``max_bytes``.

    Without a per-item maximum every item is measured and the budget is ``max_bytes``. With one, up
    to three quarters of the bound go to unmeasured items at the head of the queue (at most
    ``max_item_bytes`` each: a few batches at the default bound, so a queue that keeps up is never
    measured) and the measured rest gets what is left.

    Example:
        >>> _byte_plan(1024, 0)
        (0, 1024)
        >>> _byte_plan(64 * 1024 * 1024, 66_000)
        (762, 16816864)
    """
    if max_bytes <= 0 or max_item_bytes <= 0:
        return 0, max_bytes
    free = 3 * max_bytes // (4 * max_item_bytes)
    return free, max_bytes - free * max_item_bytes
