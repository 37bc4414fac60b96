"""Where events go: a second :class:`~trodo_trace._internal.export.pipeline.Pipeline` per runtime.

With an endpoint (``endpoint`` or ``logs_endpoint``) events leave as OTLP log records through
``otlp.make_log_export`` — the span exporter's retry and spool machinery. Without one they become
rows of the local store's ``events`` table. Either way the event id (``trodo.event.id``) is the
de-duplication key, so a batch delivered twice is stored once.

Wire format of one event (an OTLP ``LogRecord``):

* ``event_name`` and attribute ``event.name``: the event name;
* attributes ``trodo.distinct_id`` (always, except for feedback given without one),
  ``trodo.event.category``, ``trodo.event.id`` and, inside a run (or for feedback), ``trodo.run.id``;
* ``trace_id``/``span_id``: the span that was current when the event was tracked;
* ``body``: the properties as an AnyValue key-value list (a JSON object);
* severity ``INFO`` for ``track``; ``WARN``/``ERROR``/``FATAL`` for a ``server_error`` of
  severity warning/error/critical.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context

from .. import runtime as runtime_mod
from ..core.errors import log_once
from ..export.pipeline import Pipeline

logger = logging.getLogger("trodo_trace")

EVENT_NAME = "event.name"
DISTINCT_ID = "trodo.distinct_id"
CATEGORY = "trodo.event.category"
EVENT_ID = "trodo.event.id"
RUN_ID = "trodo.run.id"

#: Bytes an event holds beside its properties (ids, name, timestamps).
EVENT_OVERHEAD = 512

#: Longest a ``track`` call waits for delivery when batching is off.
SYNC_TIMEOUT_S = 5.0

_SEVERITY = {None: ("INFO", 9), "warning": ("WARN", 13), "error": ("ERROR", 17), "critical": ("FATAL", 21)}


class Event:
    """One tracked event, as built on the application thread."""

    __slots__ = (
        "category",
        "distinct_id",
        "event_id",
        "name",
        "nbytes",
        "properties",
        "run_id",
        "severity",
        "span_id",
        "trace_flags",
        "trace_id",
        "ts_ns",
    )

    def __init__(
        self,
        event_id: str,
        ts_ns: int,
        name: str,
        distinct_id: str | None,
        category: str,
        properties: dict[str, Any],
        run_id: str | None,
        trace_id: int,
        span_id: int,
        trace_flags: int,
        severity: str | None,
        nbytes: int = 0,
    ):
        self.event_id = event_id
        self.ts_ns = ts_ns
        self.name = name
        self.distinct_id = distinct_id
        self.category = category
        self.properties = properties
        self.run_id = run_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.severity = severity
        #: About how much memory the event holds (its properties and ids), for the queue's byte bound.
        self.nbytes = nbytes or EVENT_OVERHEAD

    def __repr__(self) -> str:
        return f"Event(name={self.name!r}, distinct_id={self.distinct_id!r}, run_id={self.run_id!r})"

    def attributes(self) -> dict[str, Any]:
        attributes = {EVENT_NAME: self.name}
        if self.distinct_id is not None:  # feedback may come without a user
            attributes[DISTINCT_ID] = self.distinct_id
        attributes[CATEGORY] = self.category
        attributes[EVENT_ID] = self.event_id
        if self.run_id is not None:
            attributes[RUN_ID] = self.run_id
        return attributes


def event_bytes(event: Event) -> int:
    """The queue's byte estimate of ``event`` (measured once, when it was tracked)."""
    return event.nbytes


def data_bytes(value: Any) -> int:
    """About how many bytes JSON data (cleaned event properties) takes as text.

    Example:
        >>> data_bytes({"plan": "pro", "seats": [1, 2]})
        44
    """
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is dict:
        return 2 + sum(len(key) + 4 + data_bytes(item) for key, item in value.items())
    if kind is list:
        return 2 + sum(data_bytes(item) + 1 for item in value)
    return 8


# -- conversions (export thread) -------------------------------------------------------------
def to_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Rows for ``LocalStore.write_events``."""
    return [
        {
            "dedup_key": event.event_id,
            "ts_ns": event.ts_ns,
            "name": event.name,
            "distinct_id": event.distinct_id,
            "category": event.category,
            "run_id": event.run_id,
            "trace_id": f"{event.trace_id:032x}" if event.trace_id else None,
            "span_id": f"{event.span_id:016x}" if event.span_id else None,
            "properties": event.properties,
        }
        for event in events
    ]


def to_log_records(events: Sequence[Event], resource: Any, scope: Any) -> list[Any]:
    """OpenTelemetry SDK log records, in the form the installed SDK's encoder takes."""
    from ..export.otel_compat import log_record

    records = []
    for event in events:
        text, number = _SEVERITY[event.severity]
        records.append(
            log_record(
                timestamp=event.ts_ns,
                severity_text=text,
                severity_number=number,
                body=event.properties,
                attributes=event.attributes(),
                event_name=event.name,
                trace_id=event.trace_id or 0,
                span_id=event.span_id or 0,
                trace_flags=event.trace_flags,
                resource=resource,
                scope=scope,
            )
        )
    return records


# -- destinations ----------------------------------------------------------------------------
Destination = tuple[
    str, Callable[[Sequence[Any]], Any], Callable[[list[Any]], list[Any]], Callable[[], None] | None
]


class _StoreWriter:
    """Writes event rows to the local store; a forked child reopens its own handle."""

    def __init__(self, path: Any):
        self.path = path
        self.store = self._open()

    def _open(self) -> Any:
        from ..store.local import LocalStore

        return LocalStore(self.path)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> bool | int:
        from ..store import feedback
        from ..store.local import DATA_ERRORS, each_alone

        try:
            self.store.write_events(list(rows))
            feedback.write(self.store.path, feedback.rows_from_events(rows))
        except DATA_ERRORS:
            return each_alone(self.store.write_events, rows, "events")  # one bad row, not the batch
        except Exception as exc:
            log_once("events-store", "trodo_trace: could not write events to the local store: %s", exc)
            return False
        return True

    def close(self) -> None:
        self.store.close()

    def after_fork_in_child(self) -> None:
        # The inherited SQLite handle and its lock belong to the parent; never touch them here.
        self.store = self._open()


def _redacting(convert: Callable[[list[Any]], list[Any]], redact: Callable[[str], str]) -> Any:
    """``convert`` after secret redaction of each event's properties (export thread): the whole
    value of a property whose name names a secret, and secrets found in any text."""
    from ..export.redact import redact_data

    def redacted(batch: list[Any]) -> list[Any]:
        for event in batch:
            if event.properties:
                event.properties = redact_data(event.properties, redact)
        return convert(batch)

    return redacted


def _local_store(runtime: Any) -> Destination:
    writer = _StoreWriter(runtime.store_path)
    convert = to_rows if runtime.redact is None else _redacting(to_rows, runtime.redact)
    return f"local store {runtime.store_path}", writer, convert, writer.close


def _otlp(runtime: Any) -> Destination:
    from ..export.otlp import make_log_export
    from ..runtime import SCOPE

    resource = runtime.resource

    def convert(batch: list[Any]) -> list[Any]:
        return to_log_records(batch, resource, SCOPE)

    if runtime.redact is not None:
        convert = _redacting(convert, runtime.redact)
    export = make_log_export(runtime, convert, batch_size=runtime.config.batch_size)
    # Convert and encode one record now: both import parts of the OpenTelemetry SDK on first use,
    # which fails on the export thread at interpreter exit (the events of a script that never
    # flushes would be lost).
    probe = Event("0" * 32, 0, "probe", "probe", "custom", {}, None, 0, 0, 0, None)
    export.hub.sender("logs").encode(convert([probe]))
    return "otlp logs", export, convert, None


class EventSink:
    """The runtime extension that queues events and exports them in batches."""

    def __init__(self, runtime: Any):
        config = runtime.config
        self.batch_enabled: bool = config.batch_enabled
        self.warned: set[Any] = set()
        self.closed = False
        self._started = False
        if config.endpoint or config.logs_endpoint:
            self.description, export, convert, on_shutdown = _otlp(runtime)
        else:
            self.description, export, convert, on_shutdown = _local_store(runtime)
        self._export = export
        # The OTLP delivery takes the queue's overflow and shutdown leftovers into its spool.
        self.delivery: Any = export if hasattr(export, "pipeline_hooks") else None
        hooks: dict[str, Any] = {"on_shutdown": on_shutdown}
        if self.delivery is not None:
            hooks.update(self.delivery.pipeline_hooks())
        self.pipeline = Pipeline(
            export,
            convert=convert,
            batch_size=config.batch_size,
            interval_s=config.batch_flush_interval_ms / 1000.0,
            max_queue=config.max_queue_size,
            name="trodo-event-export",
            size=event_bytes,
            max_bytes=config.max_queue_bytes,
            **hooks,
        )
        delivery: Any = self.delivery
        if delivery is not None:
            delivery.item_size = event_bytes
            delivery.max_buffer_bytes = config.max_queue_bytes
            self._in_empty_context(lambda: delivery.bind(self.pipeline))

    @staticmethod
    def _in_empty_context(action: Callable[[], Any]) -> None:
        """Run ``action`` (which may start the worker) from an empty context: with thread
        propagation on, a worker started inside a span would otherwise inherit that span."""
        token = otel_context.attach(otel_context.Context())
        try:
            action()
        finally:
            otel_context.detach(token)

    def submit(self, event: Event) -> None:
        if self.closed:
            log_once("events-closed", "trodo_trace: event after shutdown() dropped: %r", event.name)
            return
        pipeline = self.pipeline
        if not self._started:
            self._started = True
            self._in_empty_context(pipeline.ensure_started)
        pipeline.submit(event)
        if not self.batch_enabled and not self.pipeline.flush(SYNC_TIMEOUT_S):
            log_once(
                "events-sync-timeout",
                "trodo_trace: an event was not delivered within %.0f s (batch_enabled=False)",
                SYNC_TIMEOUT_S,
            )

    # -- runtime extension protocol --------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        ok = self.pipeline.flush(timeout)
        if self.delivery is not None:
            ok = self.delivery.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def shutdown(self, timeout: float) -> None:
        self.closed = True
        deadline = time.monotonic() + max(timeout, 0.0)
        if self.delivery is not None:
            # As for spans: deliver (queue, then spool) with most of the time, and keep a reserve
            # for the pipeline to hand what is left to the spool.
            reserve = min(0.25 * timeout, 1.0)
            self.pipeline.flush(max(0.0, deadline - reserve - time.monotonic()))
            self.delivery.flush(max(0.0, deadline - reserve - time.monotonic()))
        self.pipeline.shutdown(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        stats = self.pipeline.stats()
        result: dict[str, Any] = {
            "events_queued": stats["queued"],
            "events_exported": stats["exported"],
            "events_failed": stats["failed"],
            "events_dropped": stats["dropped"],
            "events_queue_depth": stats["queue_depth"],
            "events_last_error": stats["last_error"],
            "events_exporter": self.description,
        }
        if self.delivery is not None:
            # Delivered means accepted by the collector; the delivery also counts the spool.
            delivery = self.delivery.stats()
            result["events_exported"] = delivery["exported"]
            result["events_failed"] = delivery["failed"] + stats["lost"]
            result["events_spooled"] = delivery["spooled"]
            result["events_rejected"] = delivery["rejected"]
            result["events_refused"] = delivery["refused"]  # the collector does not take logs at all
            result["events_dropped"] += delivery["dropped"]
            result["events_last_error"] = delivery["last_error"] or stats["last_error"]
        return result

    def after_fork_in_child(self) -> None:
        hook = getattr(self._export, "after_fork_in_child", None)
        if hook is not None:
            hook()
        self.pipeline.after_fork_in_child()
        self._started = False


_sinks_lock = threading.Lock()
_cached: tuple[Any, EventSink] | None = None


def sink_for(runtime: Any) -> EventSink:
    """The event sink of ``runtime``, built (and registered as an extension) on first use."""
    global _cached
    cached = _cached
    if cached is not None and cached[0] is runtime:
        return cached[1]
    with _sinks_lock:
        for extension in runtime.extensions:
            if isinstance(extension, EventSink):
                break
        else:
            extension = EventSink(runtime)
            runtime.extensions.append(extension)
        _cached = (runtime, extension)
        return extension


def current_sink() -> EventSink | None:
    """The sink of the current runtime, if it has one (never builds anything)."""
    runtime = runtime_mod.current()
    if runtime is None:
        return None
    for extension in runtime.extensions:
        if isinstance(extension, EventSink):
            return extension
    return None
