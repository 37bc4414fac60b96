"""OTLP/protobuf encoding of trodo's own spans, straight from :class:`TrodoSpan` (export thread).

The OpenTelemetry path (``TrodoSpan`` -> ``ReadableSpan`` -> the SDK encoder's message objects ->
bytes) costs several message objects per attribute. Here each finished span is written once, as the
bytes of its OTLP ``Span`` message, by :class:`SpanWriter`; a request is those bytes joined under
the resource and scope envelope (:func:`encode_request`). The field numbers come from the
``opentelemetry-proto`` message descriptors, and the result decodes to the same message the SDK
encoder builds from the converted ``ReadableSpan`` (``tests/test_otlp_encode.py`` compares them
field by field).

What stays the same for a whole process or run is written once and reused as bytes: the resource
and scope envelope, every attribute key, and short string attributes (run id, user id,
conversation id, agent and tool names, span kinds, MIME types), kept in a bounded cache.

Spans that are not ours (a user's provider's spans joining a run in dual export) arrive as SDK
``ReadableSpan`` objects and are encoded by the SDK encoder; the two requests are concatenated,
which protobuf reads as one request holding both lists of ``ResourceSpans``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.trace.status import StatusCode

from ..core.values import attribute_value, encodable

_LEN, _VARINT, _I64, _I32 = 2, 0, 1, 5


def _tag(message: Any, field: str, wire: int) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number
    return _varint((number << 3) | wire)


_SMALL = [bytes([i]) for i in range(128)]


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    if value < 16384:  # a span's or an attribute's length, mostly
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Span
_TRACE_ID = _tag(Span, "trace_id", _LEN) + b"\x10"  # 16 bytes
_SPAN_ID = _tag(Span, "span_id", _LEN) + b"\x08"  # 8 bytes
_PARENT_ID = _tag(Span, "parent_span_id", _LEN) + b"\x08"
_NAME = _tag(Span, "name", _LEN)
_KIND_INTERNAL = _tag(Span, "kind", _VARINT) + _varint(Span.SPAN_KIND_INTERNAL)
_START = _tag(Span, "start_time_unix_nano", _I64)
_END = _tag(Span, "end_time_unix_nano", _I64)
_ATTRIBUTE = _tag(Span, "attributes", _LEN)
_EVENT = _tag(Span, "events", _LEN)
_LINK = _tag(Span, "links", _LEN)
_STATUS = _tag(Span, "status", _LEN)
_FLAGS = _tag(Span, "flags", _I32)
_HAS_IS_REMOTE = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_FLAGS_LOCAL = _FLAGS + struct.pack("<I", _HAS_IS_REMOTE)
_FLAGS_REMOTE = _FLAGS + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)
# Event and Link
_EVENT_TIME = _tag(Span.Event, "time_unix_nano", _I64)
_EVENT_NAME = _tag(Span.Event, "name", _LEN)
_EVENT_ATTRIBUTE = _tag(Span.Event, "attributes", _LEN)
_LINK_TRACE_ID = _tag(Span.Link, "trace_id", _LEN) + b"\x10"
_LINK_SPAN_ID = _tag(Span.Link, "span_id", _LEN) + b"\x08"
_LINK_ATTRIBUTE = _tag(Span.Link, "attributes", _LEN)
_LINK_FLAGS = _tag(Span.Link, "flags", _I32)
# Status
_STATUS_MESSAGE = _tag(Status, "message", _LEN)
_STATUS_CODE = _tag(Status, "code", _VARINT)
_STATUS_UNSET = _STATUS + b"\x00"
_STATUS_OK = _STATUS + _varint(len(_STATUS_CODE) + 1) + _STATUS_CODE + _varint(Status.STATUS_CODE_OK)
_OK_LOCAL = _STATUS_OK + _FLAGS_LOCAL
_OK_REMOTE = _STATUS_OK + _FLAGS_REMOTE
# KeyValue / AnyValue
_KEY = _tag(KeyValue, "key", _LEN)
_VALUE = _tag(KeyValue, "value", _LEN)
_STRING = _tag(AnyValue, "string_value", _LEN)
_BOOL_TRUE = _tag(AnyValue, "bool_value", _VARINT) + b"\x01"
_BOOL_FALSE = _tag(AnyValue, "bool_value", _VARINT) + b"\x00"
_INT = _tag(AnyValue, "int_value", _VARINT)
_DOUBLE = _tag(AnyValue, "double_value", _I64)
_ARRAY = _tag(AnyValue, "array_value", _LEN)
_ARRAY_ITEM = _varint((1 << 3) | _LEN)  # ArrayValue.values = 1
# Envelope
_RESOURCE_SPANS = _varint((1 << 3) | _LEN)  # ExportTraceServiceRequest.resource_spans = 1
_RS_RESOURCE = _tag(ResourceSpans, "resource", _LEN)
_RS_SCOPE_SPANS = _tag(ResourceSpans, "scope_spans", _LEN)
_RS_SCHEMA = _tag(ResourceSpans, "schema_url", _LEN)
_SS_SCOPE = _tag(ScopeSpans, "scope", _LEN)
_SS_SPAN = _tag(ScopeSpans, "spans", _LEN)
_SS_SCHEMA = _tag(ScopeSpans, "schema_url", _LEN)

_pack_q = struct.Struct("<Q").pack
# kind, start and end of a span in one call (each tag is one byte)
_pack_times = struct.Struct("<BBBQBQ").pack
_KIND_TAG, _KIND_INTERNAL_VALUE = _KIND_INTERNAL
_START_TAG, _END_TAG = _START[0], _END[0]
_pack_d = struct.Struct("<d").pack
_INT64_MIN, _INT64_MAX = -(2**63), 2**63
_MASK64 = (1 << 64) - 1

#: Short string values worth keeping encoded (ids, names, kinds, MIME types); longer ones are content.
_CACHE_VALUE_CHARS = 96
_CACHE_ENTRIES = 8192
_KEY_ENTRIES = 4096


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


class EncodedSpan:
    """A finished span as the bytes of its OTLP ``Span`` message framed as a ``ScopeSpans.spans``
    field (tag and length), and the envelope it goes under."""

    __slots__ = ("data", "envelope")

    def __init__(self, data: bytes, envelope: Envelope):
        self.data = data
        self.envelope = envelope

    def __len__(self) -> int:
        return len(self.data)


class Envelope:
    """The resource and instrumentation scope a group of spans is sent under, encoded once."""

    __slots__ = ("resource", "schema_url", "scope", "scope_schema_url")

    def __init__(self, resource: Any, scope: Any):
        attributes = dict(resource.attributes) if resource is not None else {}
        self.resource = PbResource(attributes=_key_values(attributes)).SerializeToString()
        scope_message = InstrumentationScope(
            name=scope.name,
            version=scope.version or "",
            attributes=_key_values(dict(getattr(scope, "attributes", None) or {})),
        )
        self.scope = scope_message.SerializeToString()
        self.schema_url = (getattr(resource, "schema_url", "") or "").encode()
        self.scope_schema_url = (getattr(scope, "schema_url", "") or "").encode()

    def wrap(self, spans: Iterable[bytes]) -> bytes:
        """One ``ResourceSpans`` field of an ``ExportTraceServiceRequest`` holding ``spans`` (each
        framed as a ``ScopeSpans.spans`` field, as :meth:`SpanWriter.span` writes them)."""
        parts = [_field(_SS_SCOPE, self.scope)]
        parts += spans
        if self.scope_schema_url:
            parts.append(_field(_SS_SCHEMA, self.scope_schema_url))
        scope_spans = b"".join(parts)
        body = _field(_RS_RESOURCE, self.resource) + _field(_RS_SCOPE_SPANS, scope_spans)
        if self.schema_url:
            body += _field(_RS_SCHEMA, self.schema_url)
        return _field(_RESOURCE_SPANS, body)


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    """Resource and scope attributes as messages (once per process)."""
    out = []
    for key, value in attributes.items():
        value = clean_value(value)
        if value is not None:
            out.append(KeyValue.FromString(_key_bytes(str(key)) + _any_value(value)))
    return out


_KEYS: dict[str, bytes] = {}


def _key_bytes(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        data = encodable(key).encode()
        encoded = _KEY + _varint(len(data)) + data
        if len(_KEYS) >= _KEY_ENTRIES:
            _KEYS.clear()
        _KEYS[key] = encoded
    return encoded


def _any_value(value: Any) -> bytes:
    """``KeyValue.value``: the tag, the length and the ``AnyValue`` (one of its fields, always set)."""
    kind = type(value)
    if kind is str:
        data = value.encode() if value.isascii() else encodable(value).encode()
        inner = _STRING + _varint(len(data)) + data
    elif kind is bool:
        inner = _BOOL_TRUE if value else _BOOL_FALSE
    elif kind is int:
        if not _INT64_MIN <= value < _INT64_MAX:
            return _any_value(str(value))
        inner = _INT + _varint(value & _MASK64)
    elif kind is float:
        inner = _DOUBLE + _pack_d(value)
    elif kind is tuple:
        inner = _field(_ARRAY, b"".join(_ARRAY_ITEM + _array_item(item) for item in value))
    else:
        raise TypeError(f"not an attribute value: {kind.__name__}")
    return _VALUE + _varint(len(inner)) + inner


def _array_item(value: Any) -> bytes:
    encoded = _any_value(value)  # VALUE tag + length + AnyValue: reuse the length, swap the tag
    return encoded[len(_VALUE) :]


def clean_value(value: Any) -> Any:
    """The attribute value that is sent for ``value`` (``None``: the attribute is dropped), as
    ``convert.clean_attributes`` makes it for the SDK path."""
    kind = type(value)
    if kind is str or kind is float or kind is bool:
        return value
    if kind is int:
        return value if _INT64_MIN <= value < _INT64_MAX else str(value)
    value = attribute_value(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        value = int(value)
        return value if _INT64_MIN <= value < _INT64_MAX else str(value)
    if isinstance(value, float):
        return float(value)
    if type(value) is tuple and value and type(value[0]) is int:
        if not all(_INT64_MIN <= item < _INT64_MAX for item in value):
            return None  # the SDK encoder cannot encode it and leaves it out
    return value


def _lookup(cache: dict[tuple[str, str], bytes], item: tuple[str, Any]) -> bytes | None:
    try:
        return cache.get(item)
    except TypeError:
        return None


class SpanWriter:
    """Writes our finished spans as OTLP ``Span`` bytes, under one resource and scope."""

    def __init__(self, resource: Any, scope: Any):
        self.envelope = Envelope(resource, scope)
        self._pairs: dict[tuple[str, str], bytes] = {}
        self._ints: dict[tuple[str, int], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._trace: tuple[int | None, bytes] = (None, b"")

    def attributes(self, attributes: Mapping[str, Any], tag: bytes = _ATTRIBUTE) -> list[bytes]:
        """Each attribute as a whole field (``tag``, length, ``KeyValue``; ``b""`` for one left out);
        a bad one is left out alone. Span attributes (the default tag) that are short strings come
        from the cache, looked up all at once by their ``(key, value)`` items; integers come from
        a cache of their own and long text is written with its key's cached bytes."""
        if tag is not _ATTRIBUTE:
            return [tag + encoded for encoded in self._key_values(attributes)]
        try:
            found: list[bytes | None] = list(map(self._pairs.get, attributes.items()))
        except TypeError:  # an unhashable value (a list, say): only that attribute the long way
            found = [_lookup(self._pairs, item) for item in attributes.items()]
        if None in found:
            one = self._attribute
            for index, (key, value) in enumerate(attributes.items()):
                if found[index] is None:
                    found[index] = one(key, value)
        return found  # type: ignore[return-value]  # every None was replaced

    def _attribute(self, key: Any, value: Any) -> bytes:
        """One span attribute not in the cache as a whole field (``b""``: left out)."""
        kind = type(value)
        if kind is str:
            # Written inline (a miss must cost little: thousands of distinct short inputs in a run
            # miss every time), and kept when short.
            key_bytes = _KEYS.get(key) if type(key) is str else None
            if key_bytes is not None:
                data = value.encode() if value.isascii() else encodable(value).encode()
                inner = _STRING + _varint(len(data)) + data
                payload = key_bytes + _VALUE + _varint(len(inner)) + inner
                field = _ATTRIBUTE + _varint(len(payload)) + payload
                if len(value) <= _CACHE_VALUE_CHARS:
                    pairs = self._pairs
                    if len(pairs) >= _CACHE_ENTRIES:
                        pairs.clear()
                    pairs[(key, value)] = field
                return field
            if len(value) <= _CACHE_VALUE_CHARS:
                return self._remember(self._pairs, key, value)
        elif kind is int:
            cached = self._ints.get((key, value))
            if cached is None:
                cached = self._remember(self._ints, key, value)
            return cached
        encoded = self._key_value(key, value)
        return _ATTRIBUTE + encoded if encoded is not None else b""

    def _remember(self, cache: dict[Any, bytes], key: Any, value: Any) -> bytes:
        """The whole field of one attribute, kept for the next span (``b""``: left out)."""
        encoded = self._key_value(key, value)
        field = _ATTRIBUTE + encoded if encoded is not None else b""
        if type(key) is str:
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[(key, value)] = field
        return field

    def _key_values(self, attributes: Mapping[str, Any]) -> list[bytes]:
        out = []
        for key, value in attributes.items():
            encoded = self._key_value(key, value)
            if encoded is not None:
                out.append(encoded)
        return out

    @staticmethod
    def _key_value(key: Any, value: Any) -> bytes | None:
        """Length + ``KeyValue`` of one attribute; ``None`` when it is left out (as the SDK path does)."""
        try:
            kind = type(value)
            if kind is not str and kind is not int and kind is not float and kind is not bool:
                value = clean_value(value)
                if value is None:
                    return None
            payload = _key_bytes(key if type(key) is str else str(key)) + _any_value(value)
        except Exception:
            return None  # a key whose str() raises, say: that attribute only
        return _varint(len(payload)) + payload

    def span(self, span: Any) -> EncodedSpan:
        """The OTLP ``Span`` bytes of a finished :class:`TrodoSpan` (validated as the SDK path does),
        already framed as a ``ScopeSpans.spans`` field."""
        trace = self._trace  # one tuple, read and replaced whole: other threads encode too
        if trace[0] != span.trace_id:  # the spans of a run arrive together and share it
            trace = self._trace = (span.trace_id, _TRACE_ID + span.trace_id.to_bytes(16, "big") + _SPAN_ID)
        parts = [trace[1], span.span_id.to_bytes(8, "big")]
        parent = span.parent_span_id
        if parent is not None:
            parts.append(_PARENT_ID + parent.to_bytes(8, "big"))
        name = span.name
        field = self._names.get(name) if type(name) is str else None
        if field is None:
            field = self._name(name)
        parts.append(field)
        if span.end_ns is not None:
            parts.append(
                _pack_times(_KIND_TAG, _KIND_INTERNAL_VALUE, _START_TAG, span.start_ns, _END_TAG, span.end_ns)
            )
        else:
            parts.append(_KIND_INTERNAL + _START + _pack_q(span.start_ns))
        parts += self.attributes(span.attributes)
        if span.events:
            for event_name, timestamp, event_attributes in span.events:
                parts.append(_field(_EVENT, self._event(str(event_name), timestamp, event_attributes)))
        if span.links:
            for link in span.links:
                parts.append(_field(_LINK, self._link(link)))
        remote = span.parent_remote and parent is not None
        status = span.status_code
        if status is StatusCode.OK:
            parts.append(_OK_REMOTE if remote else _OK_LOCAL)
        else:
            if status is StatusCode.ERROR:
                parts.append(_field(_STATUS, self._error_status(span.status_message)))
            else:
                parts.append(_STATUS_UNSET)
            parts.append(_FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        data = b"".join(parts)
        return EncodedSpan(_SS_SPAN + _varint(len(data)) + data, self.envelope)

    def _name(self, name: Any) -> bytes:
        """The ``name`` field of a span name (none for an empty name), kept for the next span."""
        text = name if type(name) is str else str(name)
        data = encodable(text).encode()
        field = _NAME + _varint(len(data)) + data if data else b""
        if type(name) is str and len(name) <= _CACHE_VALUE_CHARS:
            if len(self._names) >= _KEY_ENTRIES:
                self._names.clear()
            self._names[name] = field
        return field

    def _event(self, name: str, timestamp: int, attributes: Mapping[str, Any]) -> bytes:
        parts = [_EVENT_TIME + _pack_q(timestamp)]
        if name:
            parts.append(_field(_EVENT_NAME, encodable(name).encode()))
        parts.extend(self.attributes(attributes, _EVENT_ATTRIBUTE))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:
        context = link.context
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
        parts = [
            _LINK_TRACE_ID,
            context.trace_id.to_bytes(16, "big"),
            _LINK_SPAN_ID,
            context.span_id.to_bytes(8, "big"),
        ]
        parts.extend(self.attributes(dict(link.attributes or {}), _LINK_ATTRIBUTE))
        parts.append(_LINK_FLAGS + struct.pack("<I", flags))
        return b"".join(parts)

    def _error_status(self, message: str | None) -> bytes:
        code = _STATUS_CODE + _varint(Status.STATUS_CODE_ERROR)
        if message:
            return _field(_STATUS_MESSAGE, encodable(message).encode()) + code
        return code


def encode_request(items: Sequence[Any]) -> bytes:
    """An ``ExportTraceServiceRequest`` for ``items``: :class:`EncodedSpan` objects (ours) and SDK
    ``ReadableSpan`` objects (a user's provider's, encoded by the SDK encoder), serialised."""
    groups: dict[int, tuple[Envelope, list[bytes]]] = {}
    foreign = []
    for item in items:
        if type(item) is EncodedSpan:
            envelope = item.envelope
            group = groups.get(id(envelope))
            if group is None:
                group = groups[id(envelope)] = (envelope, [])
            group[1].append(item.data)
        else:
            foreign.append(item)
    body = b"".join(envelope.wrap(spans) for envelope, spans in groups.values())
    if foreign:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        body += encode_spans(foreign).SerializePartialToString()
    return body
