"""Dual export: init(tracer_provider=...) feeds the app's provider and pulls its spans into runs."""

from __future__ import annotations

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver

import trodo_trace as trodo
from trodo_trace.testing import Capture


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


@pytest.fixture
def app_provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_both_backends_get_every_span_and_foreign_spans_join_the_run(receiver, app_provider):
    """Trodo spans also reach the app's processors; the app's HTTP spans inside a run join its tree in trodo."""
    provider, app_exporter = app_provider
    global_before = trace_api.get_tracer_provider()
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, tracer_provider=provider)
    http = provider.get_tracer("http-client")

    @trodo.tool
    def call_api():
        with http.start_as_current_span("GET /weather"), http.start_as_current_span("connect"):
            pass

    @trodo.agent("dual-bot")
    def bot():
        call_api()

    bot()
    with http.start_as_current_span("outside any run"):
        pass
    assert trodo.flush(5.0)
    assert trace_api.get_tracer_provider() is global_before  # never replaced

    trodo_spans = receiver.spans()
    run_id = next(s.run_id for s in trodo_spans if s.name == "dual-bot")
    assert {s.name: s.run_id for s in trodo_spans} == {
        "dual-bot": run_id,
        "call_api": run_id,
        "GET /weather": run_id,
        "connect": run_id,
    }
    assert Capture().tree(spans=trodo_spans) == [
        {
            "name": "dual-bot",
            "kind": "run",
            "status": "OK",
            "children": [
                {
                    "name": "call_api",
                    "kind": "tool",
                    "status": "OK",
                    "children": [
                        {
                            "name": "GET /weather",
                            "kind": "function",
                            "status": "UNSET",
                            "children": [
                                {"name": "connect", "kind": "function", "status": "UNSET", "children": []}
                            ],
                        }
                    ],
                }
            ],
        }
    ]
    app_spans = {s.name: s for s in app_exporter.get_finished_spans()}
    assert sorted(app_spans) == ["GET /weather", "call_api", "connect", "dual-bot", "outside any run"]
    assert app_spans["call_api"].attributes["trodo.span.kind"] == "tool"
    assert app_spans["GET /weather"].parent.span_id == app_spans["call_api"].context.span_id
    assert "trodo.run.id" not in app_spans["outside any run"].attributes


def test_without_tracer_provider_the_app_provider_is_left_alone(receiver, app_provider):
    """No tracer_provider argument: the app's processors never see trodo spans, and no processor is added."""
    provider, app_exporter = app_provider
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20)
    with trodo.agent("solo"):
        pass
    assert trodo.flush(5.0)
    assert app_exporter.get_finished_spans() == ()
    assert len(provider._active_span_processor._span_processors) == 1
    assert [s.name for s in receiver.spans()] == ["solo"]


def test_reinit_with_the_same_provider_adds_its_processor_once(receiver, app_provider):
    """init() twice with one provider: app spans inside a run are exported once, not twice."""
    provider, _ = app_provider
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, tracer_provider=provider)
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, tracer_provider=provider)
    with trodo.agent("twice"), provider.get_tracer("db").start_as_current_span("SELECT"):
        pass
    assert trodo.flush(5.0)
    assert sorted(s.name for s in receiver.spans()) == ["SELECT", "twice"]
