"""Leaving the local store: ``trodo-trace push`` (to an OTLP collector) and ``trodo-trace export`` (to a file).

Stored spans become OpenTelemetry ``ReadableSpan`` objects again (same trace and span ids, parents,
attributes, events, status, times and resource) and stored events become log records, so a push
goes through the same export path as a live process: :func:`..export.otlp.span_export` and
:func:`..export.otlp.make_log_export` (retries, the disk spool, request byte caps).

A push remembers what reached each destination in the store's ``push_log`` table, one entry per
run and per event, written after each batch is delivered: a second push sends nothing already
sent, and a push that was killed resumes with the first batch it had not finished.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .config import resolve
from .events.sink import Event as TrackedEvent
from .events.sink import to_log_records
from .export.resource import SCOPE
from .store.local import LocalStore

_STATUS = {"ok": StatusCode.OK, "error": StatusCode.ERROR}
#: Spans per request of a push (the runs of a batch are marked pushed together).
PUSH_BATCH_SPANS = 512


def _value(value: Any) -> Any:
    """A stored JSON attribute value as an OpenTelemetry attribute value (lists become tuples)."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


class SpanRebuilder:
    """Stored span rows as ``ReadableSpan`` (resources shared between spans of one process)."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}

    def _resource(self, attributes: Any) -> Resource:
        key = json.dumps(attributes, sort_keys=True, default=str)
        resource = self._resources.get(key)
        if resource is None:
            plain = attributes if isinstance(attributes, dict) else {}
            resource = Resource({k: _value(v) for k, v in plain.items() if v is not None})
            self._resources[key] = resource
        return resource

    def __call__(self, row: dict[str, Any]) -> ReadableSpan:
        trace_id = int(row["trace_id"], 16)
        flags = TraceFlags(TraceFlags.SAMPLED)
        parent = row.get("parent_span_id")
        stored = row.get("attributes")
        attributes: dict[str, Any] = stored if isinstance(stored, dict) else {}
        events = [
            Event(
                str(event.get("name")),
                {k: _value(v) for k, v in (event.get("attributes") or {}).items() if v is not None},
                event.get("timestamp"),
            )
            for event in row.get("events") or ()
            if isinstance(event, dict)
        ]
        return ReadableSpan(
            name=row.get("name") or "",
            context=SpanContext(trace_id, int(row["span_id"], 16), is_remote=False, trace_flags=flags),
            parent=SpanContext(trace_id, int(parent, 16), is_remote=False, trace_flags=flags)
            if parent
            else None,
            resource=self._resource(row.get("resource") or {}),
            attributes={k: _value(v) for k, v in attributes.items() if v is not None},
            events=events,
            kind=SpanKind.INTERNAL,
            status=Status(_STATUS.get(row.get("status") or "", StatusCode.UNSET), row.get("status_message")),
            start_time=row.get("start_ns"),
            end_time=row.get("end_ns"),
            instrumentation_scope=SCOPE,
        )


def event_records(rows: Iterable[dict[str, Any]], resource: Resource) -> list[Any]:
    """Stored events as OpenTelemetry log records (the form ``track()`` sends)."""
    events = []
    for row in rows:
        properties = row.get("properties")
        trace_id = int(row["trace_id"], 16) if row.get("trace_id") else 0
        events.append(
            TrackedEvent(
                str(row.get("dedup_key") or row.get("id")),
                int(row.get("ts_ns") or 0),
                str(row.get("name")),
                str(row.get("distinct_id") or ""),
                str(row.get("category") or ""),
                properties if isinstance(properties, dict) else {"value": properties},
                row.get("run_id"),
                trace_id,
                int(row["span_id"], 16) if row.get("span_id") else 0,
                1 if trace_id else 0,
                None,
            )
        )
    return to_log_records(events, resource, SCOPE)


def run_batches(
    store: LocalStore, *, since_ns: int | None, run_id: str | None, max_spans: int = PUSH_BATCH_SPANS
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """``(run ids, their stored spans)`` oldest runs first, about ``max_spans`` spans a batch."""
    ids: list[str] = []
    spans: list[dict[str, Any]] = []
    for run in store.iter_runs(since_ns=since_ns, run_id=run_id):
        ids.append(run["run_id"])
        spans.extend(store.get_spans(run["run_id"]))
        if len(spans) >= max_spans:
            yield ids, spans
            ids, spans = [], []
    if ids:
        yield ids, spans


# -- export to a file ------------------------------------------------------------------------------
def _hex_ids(value: Any) -> Any:
    """OTLP/JSON wants trace and span ids as hex, where protobuf's JSON mapping gives base64."""
    if isinstance(value, dict):
        return {
            key: (
                base64.b64decode(item).hex()
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str)
                else _hex_ids(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def _otlp_json(message: Any) -> str:
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

    return json.dumps(_hex_ids(MessageToDict(message)), ensure_ascii=False, separators=(",", ":"))


def export_file(
    store: LocalStore,
    out: IO[str],
    fmt: str,
    *,
    since_ns: int | None = None,
    run_id: str | None = None,
) -> tuple[int, int, int]:
    """Write runs (with their spans) and events to ``out``; ``(runs, spans, events)`` written.

    ``jsonl``: one JSON object a line, ``{"type": "run", "run": ..., "spans": [...]}`` then
    ``{"type": "event", ...}``. ``otlp-json``: one OTLP/JSON request a line (``resourceSpans`` for a
    batch of runs, then ``resourceLogs`` for events), as the OpenTelemetry Collector's file exporter
    writes them.
    """
    runs = spans = events = 0
    rebuild = SpanRebuilder()
    if fmt == "jsonl":
        for run in store.iter_runs(since_ns=since_ns, run_id=run_id):
            stored = store.get_spans(run["run_id"])
            out.write(
                json.dumps({"type": "run", "run": run, "spans": stored}, ensure_ascii=False, default=str)
            )
            out.write("\n")
            runs += 1
            spans += len(stored)
        if run_id is None:
            for event in store.iter_events(since_ns=since_ns):
                out.write(json.dumps({"type": "event", **event}, ensure_ascii=False, default=str) + "\n")
                events += 1
        return runs, spans, events
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    for ids, rows in run_batches(store, since_ns=since_ns, run_id=run_id):
        out.write(_otlp_json(encode_spans([rebuild(row) for row in rows])) + "\n")
        runs += len(ids)
        spans += len(rows)
    if run_id is None:
        resource = Resource({})
        batch: list[dict[str, Any]] = []
        for event in store.iter_events(since_ns=since_ns):
            batch.append(event)
            if len(batch) >= PUSH_BATCH_SPANS:
                out.write(_otlp_json(encode_logs(event_records(batch, resource))) + "\n")
                events += len(batch)
                batch = []
        if batch:
            out.write(_otlp_json(encode_logs(event_records(batch, resource))) + "\n")
            events += len(batch)
    return runs, spans, events


# -- push to a collector ---------------------------------------------------------------------------
class PushResult:
    def __init__(self) -> None:
        self.runs = self.spans = self.events = 0
        self.skipped_runs = self.skipped_events = 0
        self.pending = False  # something waits in the spool for this destination
        self.error: str | None = None


def _progress(total: int, stream: IO[str] | None) -> Callable[[int], None]:
    if stream is None or not total:
        return lambda done: None

    def show(done: int) -> None:
        width = 30
        filled = int(width * done / total)
        stream.write(f"\rpushing runs [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def push(
    store: LocalStore,
    endpoint: str,
    *,
    since_ns: int | None = None,
    run_id: str | None = None,
    options: dict[str, Any] | None = None,
    progress: IO[str] | None = None,
    timeout_s: float = 30.0,
) -> PushResult:
    """Send stored runs and events to the OTLP collector at ``endpoint`` (see the module docstring).

    Raises:
        ValueError: a bad endpoint or option.
    """
    from .export import otlp

    config = resolve({"endpoint": endpoint, **(options or {})})
    holder = types.SimpleNamespace(
        config=config, store_path=Path(store.path), convert_spans=list, otlp_hub=None
    )
    _, deliver_spans, close = otlp.span_export(holder)
    deliver_logs = otlp.make_log_export(holder)
    destination = " ".join(
        str(part)
        for part in (config.protocol, otlp.signal_url(config, "traces"), otlp.signal_url(config, "logs"))
    )
    result = PushResult()
    rebuild = SpanRebuilder()
    try:
        candidates = [run["run_id"] for run in store.iter_runs(since_ns=since_ns, run_id=run_id)]
        done_before = store.pushed(destination, [f"run:{r}" for r in candidates])
        todo = [r for r in candidates if f"run:{r}" not in done_before]
        result.skipped_runs = len(candidates) - len(todo)
        show = _progress(len(todo), progress)
        show(0)
        batch_ids: list[str] = []
        batch_rows: list[dict[str, Any]] = []

        def send_runs() -> bool:
            if not batch_ids:
                return True
            if not deliver_spans([rebuild(row) for row in batch_rows]):
                result.error = deliver_spans.last_error or "the collector did not take the spans"
                return False
            store.mark_pushed(destination, [f"run:{r}" for r in batch_ids])
            result.runs += len(batch_ids)
            result.spans += len(batch_rows)
            show(result.runs)
            batch_ids.clear()
            batch_rows.clear()
            return True

        for rid in todo:
            batch_ids.append(rid)
            batch_rows.extend(store.get_spans(rid))
            if len(batch_rows) >= PUSH_BATCH_SPANS and not send_runs():
                return result
        if not send_runs():
            return result
        if run_id is None:
            _push_events(store, deliver_logs, destination, since_ns, result)
        deadline = time.monotonic() + timeout_s
        spans_ok = deliver_spans.flush(max(0.0, deadline - time.monotonic()))
        logs_ok = deliver_logs.flush(max(0.0, deadline - time.monotonic()))
        result.pending = not (spans_ok and logs_ok)
        return result
    finally:
        deliver_logs.close()
        if close is not None:
            close()


def _push_events(
    store: LocalStore, deliver: Any, destination: str, since_ns: int | None, result: PushResult
) -> None:
    resource = Resource({})
    batch: list[dict[str, Any]] = []

    def send() -> bool:
        keys = [f"event:{row['id']}" for row in batch]
        done = store.pushed(destination, keys)
        rows = [row for row, key in zip(batch, keys, strict=True) if key not in done]
        result.skipped_events += len(batch) - len(rows)
        if rows:
            if not deliver(event_records(rows, resource)):
                result.error = deliver.last_error or "the collector did not take the events"
                return False
            store.mark_pushed(destination, [f"event:{row['id']}" for row in rows])
            result.events += len(rows)
        batch.clear()
        return True

    for event in store.iter_events(since_ns=since_ns):
        batch.append(event)
        if len(batch) >= PUSH_BATCH_SPANS and not send():
            return
    send()


def stderr_if_tty() -> IO[str] | None:
    return sys.stderr if sys.stderr.isatty() else None
