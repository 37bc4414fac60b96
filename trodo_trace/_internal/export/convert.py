"""Turning finished :class:`TrodoSpan` objects into the SDK's ``ReadableSpan`` (export thread only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from ..core.spans import TrodoSpan
from ..core.values import attribute_value, encodable

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.OK)
_UNSET = Status(StatusCode.UNSET)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Valid OpenTelemetry attributes: every value encodable, one bad attribute dropped alone."""
    cleaned = {}
    for key, value in attributes.items():
        try:
            kind = type(value)
            if kind is str:
                value = encodable(value)
            elif kind is int:
                if not _INT64_MIN <= value < _INT64_MAX:
                    value = str(value)
            elif kind is not float and kind is not bool:
                value = attribute_value(value)
                if value is None:
                    continue
                if type(value) is tuple and value and type(value[0]) is str:
                    value = tuple(encodable(item) for item in value)
            cleaned[encodable(key if type(key) is str else str(key))] = value
        except Exception:
            continue  # a key whose str() raises, say: that attribute only
    return cleaned


def to_readable(span: TrodoSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The SDK span for one of ours, with validated attributes."""
    parent = None
    if span.parent_span_id is not None:
        parent = SpanContext(span.trace_id, span.parent_span_id, span.parent_remote, _SAMPLED)
    if span.status_code is StatusCode.ERROR:
        status = Status(StatusCode.ERROR, span.status_message and encodable(span.status_message))
    elif span.status_code is StatusCode.OK:
        status = _OK
    else:
        status = _UNSET
    events: tuple[Event, ...] = ()
    if span.events:
        events = tuple(
            Event(encodable(str(name)), clean_attributes(attributes), timestamp)
            for name, timestamp, attributes in span.events
        )
    return ReadableSpan(
        name=encodable(str(span.name)),
        context=span.get_span_context(),
        parent=parent,
        resource=resource,
        attributes=clean_attributes(span.attributes),
        events=events,
        links=tuple(span.links or ()),
        kind=trace_api.SpanKind.INTERNAL,
        status=status,
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=scope,
    )
