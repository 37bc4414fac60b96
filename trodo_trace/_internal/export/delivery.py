"""Getting encoded batches to the collector: retries, the spool, and counting every item once.

A :class:`SignalDelivery` is what a :class:`~.pipeline.Pipeline` exports through (one per signal:
spans now, log records later). On the pipeline's worker thread it encodes a batch and sends it with
one retry policy (tenacity: 429/502/503/504 and connection errors, exponential backoff with
jitter, ``Retry-After`` honoured, a deadline per attempt and per export). A batch the collector
cannot take in time goes to the disk spool; a batch it refuses (another 4xx/5xx) is counted as
rejected and logged once. After a failed export the collector is treated as down for a backoff
period during which batches go straight to the spool (so the worker stays fast and the queue
never fills behind a dead collector); spooled batches are then sent oldest first.

Off the worker thread:

* ``overflow(item)`` — the pipeline's hook when its queue is full (application thread, O(1)): the
  item goes to a bounded buffer that a spooler thread (started on first use) writes to disk.
* ``abandon(items)`` — at shutdown, what the worker could not finish by the deadline (the queue's
  rest and the batch being sent) is written to the spool by the caller.

Every item ends in exactly one of ``exported``, ``rejected``, ``spooled`` (waiting on disk),
``dropped`` (past the spool cap) or ``failed`` (could not be encoded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import tenacity

from ..core.counter import Counter
from ..core.errors import log_once
from .hub import DRAIN_BUDGET_S, Hub
from .otlp_transport import Attempt

logger = logging.getLogger("trodo_trace")

_DROP_LOG_INTERVAL_S = 60.0
#: Answers of a backend that has no endpoint for a signal at all (not a refusal of one batch).
SIGNAL_REFUSED = frozenset({"404", "405", "501", "UNIMPLEMENTED"})
_SIGNAL_TEXT = {"traces": "traces (spans)", "logs": "logs (track() events and errors)"}
#: How long a batch is retried when no connection can be made at all before it goes to the spool.
UNREACHABLE_BUDGET_S = 2.0
#: The overflow buffer is a hand-off to the spooler thread, not a second queue: a few batches (and
#: at most this fraction of the queue's byte bound). Past it the thread ending a span writes a batch
#: itself. A buffer as large as the queue doubled the memory of a burst without delivering faster.
OVERFLOW_BATCHES = 4
OVERFLOW_BYTES_SHARE = 8


class _Inflight:
    __slots__ = ("body", "count", "resolved")

    def __init__(self, body: bytes, count: int):
        self.body = body
        self.count = count
        self.resolved = False


def _backoff() -> Any:
    """0.5 s, 1 s, 2 s ... (at most 8 s), each plus up to 0.5 s of jitter."""
    return tenacity.wait_exponential(multiplier=0.5, max=8.0) + tenacity.wait_random(0, 0.5)


class SignalDelivery:
    """Exports one signal's batches for a pipeline (see the module docstring).

    Callable as the pipeline's ``export``: takes converted items (``ReadableSpan`` or log records),
    returns ``True`` when the batch was delivered or safely spooled.
    """

    def __init__(
        self,
        hub: Hub,
        signal: str,
        convert: Callable[[list[Any]], list[Any]],
        *,
        batch_size: int,
        max_buffer: int,
        export_timeout_s: float,
        max_request_bytes: int = 4 * 1024 * 1024,
    ):
        self.hub = hub
        self.signal = signal
        self.convert = convert
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.export_timeout_s = export_timeout_s
        self.max_request_bytes = max_request_bytes
        #: Set by the runtime: an O(1) estimate of an item's bytes and the overflow buffer's bound.
        self.item_size: Callable[[Any], int] | None = None
        self.max_buffer_bytes = 0
        self._pipelines: list[Any] = []
        hub.deliveries[signal] = self
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.rejected = 0
        self.spooled = 0
        self.spooled_total = 0
        self.dropped = 0
        self.failed = 0
        self.retries = 0
        self.last_error: str | None = None
        #: Set when the collector answered that it does not take this signal at all.
        self.refused: str | None = None
        self._last_drop_log = 0.0
        self._logged_statuses: set[str] = set()
        self._rejected_at_flush = 0
        self._item_seconds = 1e-4  # moving average of what encoding (and spooling) one item costs
        self._inflight: _Inflight | None = None
        self._stop = threading.Event()
        self.stopping = False
        self._overflow: deque[Any] = deque()
        self._overflow_bytes = 0
        self._overflow_in = Counter()
        self._overflow_done = 0
        self._overflow_wake = threading.Event()
        self._overflow_thread: threading.Thread | None = None
        self._overflow_lock = threading.Lock()

    # -- wiring ------------------------------------------------------------------------------
    def bind(self, pipeline: Any) -> None:
        """Remember the pipeline that exports through us (to wake its worker for a drain); start
        it at once when the spool already holds batches (from an earlier process, say)."""
        self._pipelines.append(pipeline)
        if self.hub.spool is not None and self.hub.spool.files():
            pipeline.ensure_started()

    def pipeline_hooks(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~.pipeline.Pipeline` that route its overflow, idle time and
        shutdown leftovers here."""
        return {
            "overflow": self.overflow,
            "on_idle": self.idle,
            "abandon": self.abandon,
            "on_shutdown": self.close,
        }

    def after_fork_in_child(self) -> None:
        self.hub.after_fork_in_child()
        self.hub.deliveries[self.signal] = self
        self._init_state()

    # -- worker thread -----------------------------------------------------------------------
    def __call__(self, items: Sequence[Any]) -> bool:
        count = len(items)
        if not count:
            return True
        started = time.perf_counter()
        chunks = self._encode_capped(list(items))
        encoded = sum(count for _, _, count in chunks)
        if encoded:
            self._measure(1.3 * (time.perf_counter() - started), encoded)  # converting costs ~30% more
        ok = encoded == count
        pending = list(reversed(chunks))
        while pending:
            chunk_items, body, chunk_count = pending.pop()
            delivered = self._deliver(body, chunk_count, splittable=chunk_count > 1)
            if delivered is None:  # 413: the collector wants smaller requests; send halves
                half = len(chunk_items) // 2
                first, second = (
                    self._encode_capped(chunk_items[:half]),
                    self._encode_capped(chunk_items[half:]),
                )
                pending.extend(reversed(second))
                pending.extend(reversed(first))  # sent first
                continue
            ok = delivered and ok
        return ok

    def _encode_capped(self, items: list[Any]) -> list[tuple[list[Any], bytes, int]]:
        """``items`` encoded as requests of at most ``max_request_bytes`` each (a batch is halved
        until it fits); an item too large alone is dropped and counted, never its batch."""
        body, count = self._encode(items)
        if not count:
            return []
        if len(body) <= self.max_request_bytes:
            return [(items, body, count)]
        if len(items) > 1:
            half = len(items) // 2
            return self._encode_capped(items[:half]) + self._encode_capped(items[half:])
        with self._lock:
            self.dropped += 1
        self.last_error = f"an item of {len(body)} bytes exceeds max_request_bytes ({self.max_request_bytes})"
        log_once(
            "too-large:" + self.signal,
            "trodo_trace: a %s of %d bytes exceeds max_request_bytes (%d) and was dropped (alone)",
            "span" if self.signal == "traces" else "log record",
            len(body),
            self.max_request_bytes,
        )
        return []

    def _encode(self, items: Sequence[Any]) -> tuple[bytes, int]:
        """The request for ``items`` and how many it holds: an item that cannot be encoded is
        dropped alone (counted as ``failed``), never its batch."""
        encode = self.hub.sender(self.signal).encode
        try:
            return encode(items), len(items)
        except Exception as exc:
            first = exc
        good = []
        for item in items:
            try:
                encode([item])
            except Exception as exc:
                first = exc
                continue
            good.append(item)
        if len(good) < len(items):
            self._count_failed(len(items) - len(good), first)
        if not good:
            return b"", 0
        try:
            return encode(good), len(good)
        except Exception as exc:
            self._count_failed(len(good), exc)
            return b"", 0

    def _measure(self, seconds: float, count: int) -> None:
        self._item_seconds = 0.8 * self._item_seconds + 0.2 * (seconds / count)

    def spool_seconds(self, count: int) -> float:
        """About how long writing ``count`` queued items to the spool takes (encoding included)."""
        return count * self._item_seconds

    def _deliver(self, body: bytes, count: int, splittable: bool = False) -> bool | None:
        """Send (or spool) one request; ``None`` when the collector answered 413 and the batch can
        be split (``splittable``): the caller sends it in halves."""
        hub = self.hub
        circuit = hub.circuit(self.signal)
        if self.stopping or hub.backlog() or circuit.is_open():
            # Keep the order (older batches wait on disk) and do not wait on a collector known down.
            stored = self._spool(body, count)
            if not self.stopping and not circuit.is_open():
                hub.drain(time.monotonic() + DRAIN_BUDGET_S)
            return stored
        inflight = _Inflight(body, count)
        self._inflight = inflight
        attempt = self._send_with_retries(body)
        with self._lock:
            self._inflight = None
            if inflight.resolved:  # abandoned at shutdown meanwhile: already spooled
                return True
            inflight.resolved = True
        if attempt.ok:
            hub.circuit(self.signal).succeed()
            rejected = min(attempt.rejected, count)
            with self._lock:
                self.exported += count - rejected
                self.rejected += rejected
            if rejected:
                self.log_rejection(attempt, rejected)
            return not rejected
        if not attempt.retryable:
            if attempt.status == "413" and splittable:
                return None
            with self._lock:
                self.rejected += count
            self.log_rejection(attempt, count)
            return False
        hub.circuit(self.signal).fail(attempt.retry_after)
        self.note_error(attempt)
        return self._spool(body, count)

    def _send_with_retries(self, body: bytes) -> Attempt:
        started = time.monotonic()
        deadline = started + self.export_timeout_s
        sender = self.hub.sender(self.signal)
        attempt_timeout = self.hub.attempt_timeout_s
        stop_event = self._stop

        def attempt_once() -> Attempt:
            if stop_event.is_set():
                return Attempt(False, True, "shutdown")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Attempt(False, True, "deadline")
            return sender.send(body, min(attempt_timeout, remaining))

        backoff = _backoff()

        def wait(state: tenacity.RetryCallState) -> float:
            result = state.outcome.result() if state.outcome is not None else None
            if result is not None and result.retry_after is not None:
                return float(result.retry_after)
            return float(backoff(state))

        def stop(state: tenacity.RetryCallState) -> bool:
            upcoming = getattr(state, "upcoming_sleep", None)
            if upcoming is None:  # tenacity before 8.3 decides to stop before computing the wait
                upcoming = wait(state)
            now = time.monotonic()
            result = state.outcome.result() if state.outcome is not None else None
            if result is not None and result.unreachable and now + upcoming - started >= UNREACHABLE_BUDGET_S:
                return True  # nobody listens: spool now rather than hold the worker (and the exit)
            return stop_event.is_set() or now + upcoming >= deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            with self._lock:
                self.retries += 1
            if state.outcome is not None:
                self.note_error(state.outcome.result())

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda a: not a.ok and a.retryable),
            wait=wait,
            stop=stop,
            sleep=stop_event.wait,  # type: ignore[arg-type]  # tenacity ignores what sleep returns
            before_sleep=before_sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]  # set by then
        )
        return retrying(attempt_once)

    def idle(self) -> None:
        if not self.stopping:
            self.hub.idle()

    # -- spooling ----------------------------------------------------------------------------
    def _spool(self, body: bytes, count: int) -> bool:
        spool = self.hub.spool
        if spool is not None and spool.put(self.signal, body, count):
            with self._lock:
                self.spooled += count
                self.spooled_total += count
            return True
        with self._lock:
            self.dropped += count
        if spool is None:
            why = "the spool is disabled"
        else:
            why = spool.last_failure or f"the spool is full (spool_max_bytes={spool.max_bytes})"
        self._log_drop(count, why)
        return False

    def _spool_items(self, items: list[Any]) -> None:
        started = time.perf_counter()
        try:
            converted = self.convert(items)
        except Exception as exc:
            first: Exception = exc
            converted = []
            for item in items:
                try:
                    converted.extend(self.convert([item]))
                except Exception as item_exc:
                    first = item_exc
            if len(converted) < len(items):
                self._count_failed(len(items) - len(converted), first)
        for _, body, count in self._encode_capped(converted):
            self._spool(body, count)
        self._measure(time.perf_counter() - started, len(items))

    def overflow(self, item: Any) -> bool:
        """The pipeline's queue is full (application thread): buffer ``item`` for the spooler.

        O(1) while the buffer has room (a few batches: ``OVERFLOW_BATCHES``). When it is full too
        (spans end faster than they can be encoded), the calling thread writes one batch to the
        spool itself: backpressure instead of a drop, and memory stays bounded by the queue plus
        this small buffer.
        """
        buffer = self._overflow
        if self.stopping or self.hub.spool is None:
            return False
        size = self.item_size
        nbytes = size(item) if size is not None else 0
        if len(buffer) >= min(self.max_buffer, OVERFLOW_BATCHES * self.batch_size) or (
            size is not None
            and self._overflow_bytes + nbytes > self.max_buffer_bytes // OVERFLOW_BYTES_SHARE > 0
        ):
            self._spool_overflow(once=True)
        self._overflow_bytes += nbytes
        buffer.append(item)
        self._overflow_in.increment()
        if self._overflow_thread is None:
            self._start_spooler()
        if not self._overflow_wake.is_set():
            self._overflow_wake.set()
        return True

    def _start_spooler(self) -> None:
        with self._overflow_lock:
            if self._overflow_thread is not None:
                return
            thread = threading.Thread(target=self._spooler, name=f"trodo-{self.signal}-spool", daemon=True)
            self._overflow_thread = thread
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: spool on the spot
                self._spool_overflow()

    def _spooler(self) -> None:
        while True:
            self._overflow_wake.wait(0.5)
            self._overflow_wake.clear()
            self._spool_overflow()

    def _spool_overflow(self, once: bool = False) -> None:
        buffer = self._overflow
        while buffer:
            batch: list[Any] = []
            try:
                while len(batch) < self.batch_size:
                    batch.append(buffer.popleft())
            except IndexError:
                pass
            if self.item_size is not None:
                self._overflow_bytes = max(0, self._overflow_bytes - sum(map(self.item_size, batch)))
            try:
                self._spool_items(batch)
            finally:
                with self._lock:
                    self._overflow_done += len(batch)
            if once:
                return

    # -- shutdown ----------------------------------------------------------------------------
    def abandon(self, items: list[Any]) -> None:
        """Shutdown deadline reached: spool the batch being sent, the queue's rest and the overflow."""
        self.stopping = True
        self._stop.set()
        with self._lock:
            inflight = self._inflight
            if inflight is not None and not inflight.resolved:
                inflight.resolved = True
            else:
                inflight = None
        if inflight is not None:
            self._spool(inflight.body, inflight.count)
        for start in range(0, len(items), self.batch_size):
            self._spool_items(items[start : start + self.batch_size])
        self._spool_overflow()

    def close(self) -> None:
        self.stopping = True
        self._stop.set()
        self._spool_overflow()
        if all(delivery.stopping for delivery in self.hub.deliveries.values()):
            self.hub.close()

    def flush(self, timeout: float) -> bool:
        """Wait for the spooler, then for a drain of the spool; ``True`` when nothing of ours waits on
        disk and nothing was rejected since the last flush."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while self._overflow_done < self._overflow_in.value:
            if time.monotonic() >= deadline:
                return False
            self._overflow_wake.set()
            time.sleep(0.005)
        hub = self.hub
        if hub.spool is not None and (self.spooled or hub.spool.has_files()) and not self.stopping:
            hub.request_drain(deadline, self._wake_worker)
        rejected, self._rejected_at_flush = self._rejected_at_flush, self.rejected
        return self.spooled == 0 and self.rejected == rejected

    def _wake_worker(self) -> bool:
        for pipeline in self._pipelines:
            if pipeline.wake():
                return True
        return False

    # -- accounting --------------------------------------------------------------------------
    def spool_resolved(self, count: int, rejected: int, attempt: Attempt) -> None:
        """A file of ours left the spool: delivered (less ``rejected`` items) or refused."""
        with self._lock:
            self.spooled -= count
            self.exported += count - rejected
            self.rejected += rejected
        if rejected:
            self.log_rejection(attempt, rejected)

    def note_error(self, attempt: Attempt) -> None:
        self.last_error = attempt.summary

    def log_rejection(self, attempt: Attempt, count: int) -> None:
        """Log a refusal once per status (per exporter): status and the start of the answer's body.

        A backend without this signal (404/405/501, gRPC ``UNIMPLEMENTED``: Phoenix answers 405 on
        ``/v1/logs``) gets one warning that says so, naming the signal and the answer; the reason stays
        in ``stats()`` (``last_error``, ``refused``)."""
        if attempt.status in SIGNAL_REFUSED:
            self.refused = f"{attempt.summary} (the collector does not accept {self.signal})"
            self.last_error = self.refused
            if attempt.status in self._logged_statuses:
                return
            self._logged_statuses.add(attempt.status)
            path = urlsplit(self.hub.sender(self.signal).options.url).path or "/"
            logger.warning(
                "trodo_trace: the collector does not accept %s: it answered %s to %s; %d %s refused "
                "(counted as rejected in stats(), as will be every later one); send %s to another "
                "backend with %s, or leave them out of this one",
                _SIGNAL_TEXT[self.signal],
                attempt.summary,
                path,
                count,
                "spans" if self.signal == "traces" else "log records",
                "spans" if self.signal == "traces" else "events",
                "traces_endpoint=..." if self.signal == "traces" else "logs_endpoint=...",
            )
            return
        self.last_error = attempt.summary
        if attempt.status in self._logged_statuses:
            return
        self._logged_statuses.add(attempt.status)
        logger.warning(
            "trodo_trace: the collector refused %d %s (%s); they are not retried",
            count,
            "spans" if self.signal == "traces" else "log records",
            attempt.summary,
        )

    def _count_failed(self, count: int, exc: Exception) -> None:
        with self._lock:
            self.failed += count
        self.last_error = f"{type(exc).__name__} (an item could not be encoded; dropped)"
        log_once(
            "encode:" + self.signal,
            "trodo_trace: %d %s could not be encoded (%s) and were dropped; the rest of the batch was kept",
            count,
            "spans" if self.signal == "traces" else "log records",
            type(exc).__name__,
        )

    def _log_drop(self, count: int, why: str) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            logger.warning(
                "trodo_trace: %s; %d %s dropped (%d dropped so far)",
                why,
                count,
                "spans" if self.signal == "traces" else "log records",
                self.dropped,
            )

    def stats(self) -> dict[str, Any]:
        spool = self.hub.spool
        with self._lock:
            result: dict[str, Any] = {
                "exported": self.exported,
                "rejected": self.rejected,
                "spooled": self.spooled,
                "spooled_total": self.spooled_total,
                "dropped": self.dropped,
                "failed": self.failed,
                "retries": self.retries,
                "overflow_depth": len(self._overflow),
                "last_error": self.last_error,
                "refused": self.refused,
            }
        result["recovered"] = self.hub.recovered
        result["recovered_rejected"] = self.hub.recovered_rejected
        result["spool_bytes"] = spool.size_bytes if spool is not None else 0
        return result
