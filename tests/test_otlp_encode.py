"""Our direct OTLP encoding of spans says what OpenTelemetry's encoder says, over http and gRPC.

Spans of every shape (attribute types and arrays, odd text, events, links, error status, a remote
parent) are exported to a real receiver; the requests it received are decoded and compared, field
by field, with the SDK encoder's request for the same spans converted to ``ReadableSpan``.
"""

from __future__ import annotations

import enum

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanContext, TraceFlags
from otlp_receiver import OtlpReceiver

import trodo_trace as trodo
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace._internal.export.convert import to_readable
from trodo_trace._internal.export.encode import SpanWriter, encode_request
from trodo_trace._internal.export.resource import SCOPE

SPAN_FIELDS = (
    "trace_id",
    "span_id",
    "trace_state",
    "parent_span_id",
    "flags",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "attributes",
    "dropped_attributes_count",
    "events",
    "dropped_events_count",
    "links",
    "dropped_links_count",
    "status",
)


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


def _make_spans() -> None:
    """Spans of every shape the export meets."""

    @trodo.tool
    def search(query):
        span = trodo.current_span()
        span.set_attribute("count", 3)
        span.set_attribute("huge", 2**70)  # past int64: sent as text
        span.set_attribute("negative", -5)
        span.set_attribute("ratio", 0.25)
        span.set_attribute("flag", False)
        span.set_attribute("tags", ["a", "b", "ü"])
        span.set_attribute("numbers", [1, 2, 3])
        span.set_attribute("floats", (0.5, 1.5))
        span.set_attribute("bools", [True, False])
        span.set_attribute("empty", [])
        span.set_attribute("mixed", [1, "two"])  # not homogeneous: JSON text
        span.set_attribute("mapping", {"k": [1, 2]})
        span.set_attribute("nothing", None)  # dropped
        span.set_attribute("level", Level.HIGH)
        span.set_attribute("subclassed", Text("text"))
        span.set_attribute("surrogate", "bad \ud800 text")
        span.set_attribute("bad \udfff key", "v")
        span.set_attribute("empty.text", "")
        span.set_attribute("long.text", "x" * 500)
        span.add_event("checkpoint", {"step": 2, "items": ["x", "y"]})
        span.add_event("\ud800 odd", None)
        span.add_link(SpanContext(0xABC, 0xDEF, True, TraceFlags(1)), {"why": "retry"})
        return ["a", "b"]

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt):
        return {"text": "ok", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}

    @trodo.tool(name="ünïcode tool")
    def fail():
        raise ValueError("no such thing: ü")

    @trodo.agent("support-bot", distinct_id="user-1", conversation_id="conv-9")
    def bot(question):
        search(question)
        try:
            fail()
        except ValueError:
            pass
        return complete(question)["text"]

    bot("hi")
    bot("again")
    # a run continued from another service: a remote parent
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        with trodo.agent("downstream"):
            pass
    finally:
        otel_context.detach(token)


def _fields(span):
    return {name: getattr(span, name) for name in SPAN_FIELDS}


def _sdk_request(spans):
    runtime = runtime_mod.get()
    return encode_spans([to_readable(span, runtime.resource, SCOPE) for span in spans])


def _compare(received: ExportTraceServiceRequest, expected: ExportTraceServiceRequest) -> None:
    assert [rs.resource for rs in received.resource_spans] == [rs.resource for rs in expected.resource_spans]
    assert [ss.scope for rs in received.resource_spans for ss in rs.scope_spans] == [
        ss.scope for rs in expected.resource_spans for ss in rs.scope_spans
    ]
    got = {s.span_id: s for rs in received.resource_spans for ss in rs.scope_spans for s in ss.spans}
    want = {s.span_id: s for rs in expected.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert sorted(got) == sorted(want)
    for span_id, span in want.items():
        assert _fields(got[span_id]) == _fields(span), span.name
        assert got[span_id] == span


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_direct_encoding_matches_the_sdk_encoder_on_the_wire(protocol):
    """What the collector receives decodes to the SDK encoder's message for the same spans."""
    ended = []
    with OtlpReceiver(protocol, keep_bodies=True) as receiver:
        trodo.init(
            endpoint=receiver.url,
            protocol="grpc" if protocol == "grpc" else "http/protobuf",
            service_name="encode-test",
            schedule_delay_ms=50,
        )
        runtime_mod.get().listeners.append(ended.append)
        _make_spans()
        assert trodo.flush(10.0) is True
        assert receiver.wait_for_spans(len(ended))
        received = ExportTraceServiceRequest()
        for request in receiver.requests:
            received.MergeFromString(request.body)
    assert len(ended) == 9
    _compare(received, _sdk_request(ended))
    spans = {s.name: s for rs in received.resource_spans for ss in rs.scope_spans for s in ss.spans}
    search = {kv.key: kv.value for kv in spans["search"].attributes}
    assert search["huge"].string_value == str(2**70)
    assert [v.string_value for v in search["tags"].array_value.values] == ["a", "b", "ü"]
    assert search["empty"].HasField("array_value") and not search["empty"].array_value.values
    assert search["surrogate"].string_value == "bad \ufffd text"
    assert search["level"].int_value == 3
    assert "nothing" not in search
    assert spans["downstream"].flags == 0x300  # HAS_IS_REMOTE | IS_REMOTE
    assert spans["downstream"].parent_span_id == bytes.fromhex("b7ad6b7169203331")
    assert spans["ünïcode tool"].status.code == 2 and "no such thing" in spans["ünïcode tool"].status.message


def test_both_encodings_of_the_same_spans_agree_with_redaction_off():
    """Without the scrubber (content and redaction as captured), the writer alone matches the SDK."""
    trodo.init(endpoint="http://127.0.0.1:9", redact_secrets=False, service_name="encode-test")
    ended = []
    runtime = runtime_mod.get()
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None  # keep the spans here: nothing is sent
    _make_spans()
    writer = SpanWriter(runtime.resource, SCOPE)
    for _ in range(2):  # the second pass reads the cached attribute bytes
        body = encode_request([writer.span(span) for span in ended])
        _compare(ExportTraceServiceRequest.FromString(body), _sdk_request(ended))


def test_spans_of_a_users_provider_share_the_request_with_ours():
    """A ``ReadableSpan`` (dual export) goes through the SDK encoder in the same request."""
    trodo.init(endpoint="http://127.0.0.1:9", service_name="encode-test")
    ended = []
    runtime = runtime_mod.get()
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None
    _make_spans()
    writer = SpanWriter(runtime.resource, SCOPE)
    foreign = to_readable(ended[0], runtime.resource, SCOPE)
    request = ExportTraceServiceRequest.FromString(encode_request([writer.span(ended[1]), foreign]))
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names == [ended[1].name, ended[0].name]
    assert len(request.resource_spans) == 2


def test_a_value_that_cannot_be_an_attribute_is_dropped_alone():
    """An attribute whose value cannot be written is left out; the span and the rest stay."""

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no")

        __str__ = __repr__

    trodo.init(endpoint="http://127.0.0.1:9", service_name="encode-test")
    runtime = runtime_mod.get()
    ended = []
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None
    with trodo.tool("t") as span:
        span.set_attribute("ok", 1)
        span.set_attribute(Unprintable(), 2)  # type: ignore[arg-type]
    writer = SpanWriter(runtime.resource, SCOPE)
    request = ExportTraceServiceRequest.FromString(encode_request([writer.span(ended[0])]))
    (sent,) = request.resource_spans[0].scope_spans[0].spans
    assert {kv.key for kv in sent.attributes} >= {"ok"}
    _compare(request, _sdk_request(ended))


def test_batches_reuse_one_connection_and_a_retry_reuses_the_compressed_body():
    """Keep-alive: many requests, one TCP connection; the gzip of a body is made once per body."""
    from trodo_trace._internal.export.otlp import transport_options
    from trodo_trace._internal.export.otlp_transport import make_sender

    with OtlpReceiver("http", keep_bodies=True) as receiver:
        trodo.init(endpoint=receiver.url, service_name="encode-test", compression="gzip")
        options = transport_options(runtime_mod.get().config, "traces")
        sender = make_sender("traces", options)
        compressed = []
        compress = sender._compress
        sender._compress = lambda body: compressed.append(body) or compress(body)
        writer = SpanWriter(runtime_mod.get().resource, SCOPE)
        ended = []
        runtime_mod.get().listeners.append(ended.append)
        runtime_mod.get().pipeline.submit = lambda span: None
        with trodo.tool("t"):
            pass
        body = encode_request([writer.span(ended[0])])
        for _ in range(3):
            assert sender.send(body, 5.0).ok
        other = encode_request([writer.span(ended[0])])
        assert sender.send(other, 5.0).ok
        pools = sender._session.get_adapter(options.url).poolmanager.pools
        assert [pools[key].num_connections for key in pools.keys()] == [1]
        assert len(compressed) == 2
        assert [r.items for r in receiver.requests] == [1, 1, 1, 1]
        assert receiver.requests[0].headers.get("content-encoding") == "gzip"
        sender.close()


def test_cached_attribute_bytes_never_stand_in_for_an_equal_value_of_another_type():
    """The writer's caches (attribute fields looked up by ``(key, value)``, span names, the trace id
    of the previous span) give each span its own values: ``True``, ``1`` and ``1.0`` under one key
    stay a bool, an int and a double; an unhashable value (a list) takes the long way; spans of two
    traces interleaved keep their own trace ids."""
    trodo.init(endpoint="http://127.0.0.1:9", redact_secrets=False, service_name="encode-test")
    ended = []
    runtime = runtime_mod.get()
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None
    for value in (1, True, 1.0, "1", [1, 2], 1, True):
        with trodo.tool("same name") as span:
            span.set_attribute("v", value)
            span.set_attribute("shared", "run-wide value")
    writer = SpanWriter(runtime.resource, SCOPE)
    order = [ended[0], ended[3], ended[1], ended[4], ended[2], ended[5], ended[6]]
    for _ in range(2):  # the second pass reads every cache
        request = ExportTraceServiceRequest.FromString(encode_request([writer.span(s) for s in order]))
        _compare(request, _sdk_request(order))
        sent = request.resource_spans[0].scope_spans[0].spans
        kinds = [next(kv.value for kv in s.attributes if kv.key == "v").WhichOneof("value") for s in sent]
        assert kinds == [
            "int_value",
            "string_value",
            "bool_value",
            "array_value",
            "double_value",
            "int_value",
            "bool_value",
        ]
        assert [s.trace_id for s in sent] == [s.trace_id.to_bytes(16, "big") for s in order]
        assert {s.name for s in sent} == {"same name"}


def test_a_run_of_more_distinct_short_values_than_the_cache_holds_is_written_exactly():
    """Thousands of distinct short inputs and outputs (more than the attribute cache holds, so it is
    emptied on the way) and keys seen for the first time: each span still decodes to the SDK
    encoder's message, on the first pass and the second."""
    from trodo_trace._internal.export import encode as encode_mod

    trodo.init(endpoint="http://127.0.0.1:9", redact_secrets=False, service_name="encode-test")
    ended = []
    runtime = runtime_mod.get()
    runtime.listeners.append(ended.append)
    runtime.pipeline.submit = lambda span: None

    @trodo.tool
    def step(i):
        return f"ré-{i}" if i % 3 else i

    count = encode_mod._CACHE_ENTRIES // 2 + 200  # two distinct short strings per span: past the cap
    with trodo.agent("wide"):
        for i in range(count):
            with trodo.tool(f"fresh {i % 7}") as span:
                span.set_attribute(f"new.key.{i}", f"v{i}")  # a key never seen before
            step(i)
    writer = SpanWriter(runtime.resource, SCOPE)
    for _ in range(2):
        request = ExportTraceServiceRequest.FromString(encode_request([writer.span(s) for s in ended]))
        _compare(request, _sdk_request(ended))
    assert len(ended) == 2 * count + 1
    assert len(writer._pairs) <= encode_mod._CACHE_ENTRIES
