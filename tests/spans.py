"""Finished OpenTelemetry SDK spans built by hand, for the store, CLI and schema tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags


def context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def readable_span(
    name: str,
    trace_id: int,
    span_id: int,
    parent_id: int | None = None,
    *,
    start: int,
    end: int,
    attrs: Mapping[str, Any],
    resource: Resource,
    events: Sequence[Event] = (),
    status: Status | None = None,
) -> ReadableSpan:
    """A finished span of ``trace_id`` (status OK unless ``status`` is given)."""
    return ReadableSpan(
        name=name,
        context=context(trace_id, span_id),
        parent=context(trace_id, parent_id) if parent_id is not None else None,
        resource=resource,
        attributes=attrs,
        events=events,
        status=status or Status(StatusCode.OK),
        start_time=start,
        end_time=end,
    )
