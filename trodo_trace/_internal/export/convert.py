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
    try:
        cleaned = {}
        plain_keys = "".join(attributes).isascii()  # every key a str, all ASCII: the usual case
    except TypeError:
        plain_keys = False
    try:
        for key, value in attributes.items():
            kind = type(value)
            if plain_keys and (
                (kind is str and value.isascii())
                or kind is bool
                or kind is float
                or (kind is int and _INT64_MIN <= value < _INT64_MAX)
            ):
                cleaned[key] = value  # the usual case, kept cheap
            else:
                key, value = _clean_attribute(key, value)
                if value is not None:
                    cleaned[key] = value
        return cleaned
    except Exception:  # a key whose str() raises, say: that attribute only
        cleaned = {}
        for key, value in attributes.items():
            try:
                key, value = _clean_attribute(key, value)
            except Exception:
                continue
            if value is not None:
                cleaned[key] = value
        return cleaned


def _clean_attribute(key: Any, value: Any) -> tuple[str, Any]:
    """``(key, value)`` made valid and encodable; value ``None`` when the attribute is dropped."""
    kind = type(value)
    if kind is str:
        value = encodable(value)
    elif kind is int:
        if not _INT64_MIN <= value < _INT64_MAX:
            value = str(value)
    elif kind is not float and kind is not bool:
        value = attribute_value(value)
        if type(value) is tuple and value and type(value[0]) is str:
            value = tuple(encodable(item) for item in value)
    return encodable(key if type(key) is str else str(key)), value


def _text(value: Any) -> str:
    if type(value) is str and value.isascii():
        return value
    return encodable(str(value))


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
            Event(_text(name), clean_attributes(attributes), timestamp)
            for name, timestamp, attributes in span.events
        )
    return ReadableSpan(
        name=_text(span.name),
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
