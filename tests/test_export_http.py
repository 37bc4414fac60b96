"""OTLP export to a real receiver: what arrives over http/protobuf and gRPC, endpoints, headers, resource."""

from __future__ import annotations

import logging

import pytest
from otlp_receiver import OtlpReceiver, make_certificates
from otlp_receiver_process import ReceiverProcess

import trodo_trace as trodo
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace._internal.config import resolve
from trodo_trace._internal.export.otlp import signal_url
from trodo_trace.testing import Capture, capture

KEYS = ("trodo.run.id", "input.value", "output.value", "gen_ai.usage.input_tokens", "trodo.run.span_count")


@pytest.fixture(params=["http", "grpc"])
def receiver(request):
    with OtlpReceiver(request.param) as server:
        yield server


def _protocol(receiver):
    return "grpc" if receiver.protocol == "grpc" else "http/protobuf"


def _agent():
    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt):
        return {"text": "ok", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}

    @trodo.tool
    def search(query):
        return ["a", "b"]

    @trodo.agent("support-bot", distinct_id="user-1")
    def bot(question):
        search(question)
        return complete(question)["text"]

    return bot


def test_a_run_arrives_whole_over_both_protocols(receiver):
    """Every span of a run reaches the collector with the same tree and attributes as captured locally."""
    trodo.init(endpoint=receiver.url, protocol=_protocol(receiver), schedule_delay_ms=50)
    bot = _agent()
    with capture() as local:
        assert bot("hi") == "ok"
    assert trodo.flush(5.0) is True
    assert receiver.wait_for_spans(3)
    assert Capture().tree(KEYS, spans=receiver.spans()) == local.tree(KEYS)
    stats = trodo.stats()
    assert (
        stats["started"],
        stats["exported"],
        stats["spooled"],
        stats["dropped"],
        stats["queue_depth"],
    ) == (
        3,
        3,
        0,
        0,
        0,
    )


def test_resource_headers_and_gzip_on_the_wire(receiver):
    """The site id travels as x-trodo-site-id and trodo.site_id; service.name and telemetry.sdk.* are set."""
    trodo.init(
        endpoint=receiver.url,
        protocol=_protocol(receiver),
        site_id="site-42",
        service_name="support",
        headers={"x-team": "core"},
        schedule_delay_ms=50,
    )
    _agent()("hi")
    assert trodo.flush(5.0)
    (request,) = receiver.requests
    assert request.headers["x-trodo-site-id"] == "site-42"
    assert request.headers["x-team"] == "core"
    if receiver.protocol == "http":
        assert request.path == "/v1/traces"
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["content-type"] == "application/x-protobuf"
    (resource,) = receiver.resources()
    assert resource["service.name"] == "support"
    assert resource["trodo.site_id"] == "site-42"
    assert {"telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version"} <= set(resource)


def test_endpoint_rules_follow_the_otlp_specification(monkeypatch):
    """A base endpoint gets /v1/traces and /v1/logs (http only); a signal endpoint is used as is."""
    base = resolve({"endpoint": "http://127.0.0.1:4318/"}, environ={})
    assert signal_url(base, "traces") == "http://127.0.0.1:4318/v1/traces"
    assert signal_url(base, "logs") == "http://127.0.0.1:4318/v1/logs"
    grpc = resolve({"endpoint": "http://127.0.0.1:4317", "protocol": "grpc"}, environ={})
    assert signal_url(grpc, "traces") == "http://127.0.0.1:4317"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9999/custom/spans",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    config = resolve({}, environ=env)
    assert signal_url(config, "traces") == "http://127.0.0.1:9999/custom/spans"
    assert signal_url(config, "logs") == "http://127.0.0.1:4318/v1/logs"


def test_environment_alone_configures_otlp(monkeypatch):
    """OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL=grpc select gRPC export without init()."""
    with OtlpReceiver("grpc") as server:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        _agent()("hi")
        assert trodo.flush(5.0)
        assert sorted(span.name for span in server.spans()) == ["complete", "search", "support-bot"]
        assert runtime_mod.get().exporter_description == f"otlp grpc {server.url}"


def test_plain_http_to_a_remote_host_warns_once_without_header_values(caplog):
    """A plain-http endpoint that is not loopback logs one warning; header values and URL passwords never appear."""
    with caplog.at_level(logging.WARNING, logger="trodo_trace"):
        trodo.init(
            endpoint="http://user:hunter22@collector.invalid:4318",
            headers={"authorization": "Bearer tok-987"},
        )
        trodo.init(endpoint="http://127.0.0.1:4318", headers={"authorization": "Bearer tok-987"})
    text = caplog.text
    assert text.count("plain http") == 1
    assert "collector.invalid" in text
    assert "hunter22" not in text and "tok-987" not in text
    assert "hunter22" not in str(trodo.stats())


def test_every_span_is_counted_once_across_batches(receiver):
    """Many runs in several batches: each span arrives once and the counters say so."""
    trodo.init(
        endpoint=receiver.url, protocol=_protocol(receiver), max_export_batch_size=16, schedule_delay_ms=20
    )
    bot = _agent()
    for i in range(20):
        bot(f"q{i}")
    assert trodo.flush(5.0)
    spans = receiver.spans()
    assert len(spans) == 60
    assert len({span.span_id for span in spans}) == 60
    assert len(receiver.requests) >= 4
    stats = trodo.stats()
    assert (stats["exported"], stats["retries"], stats["rejected"]) == (60, 0, 0)


def test_tls_with_a_private_ca_and_a_client_certificate(tmp_path):
    """certificate_file / client_certificate_file / client_key_file: mutual TLS to the collector works;
    without the client certificate the handshake fails and the spans wait in the spool."""
    files = make_certificates(tmp_path / "tls")
    with OtlpReceiver("http", tls=(files["server.pem"], files["server.key"], files["ca.pem"])) as receiver:
        trodo.init(
            endpoint=receiver.url,
            certificate_file=files["ca.pem"],
            client_certificate_file=files["client.pem"],
            client_key_file=files["client.key"],
            schedule_delay_ms=20,
        )
        _agent()("hi")
        assert trodo.flush(5.0) is True
        assert len(receiver.spans()) == 3
        trodo.init(
            endpoint=receiver.url,
            certificate_file=files["ca.pem"],
            schedule_delay_ms=20,
            export_timeout_ms=300,
            attempt_timeout_ms=200,
        )
        _agent()("hi")
        assert trodo.flush(2.0) is False
        stats = trodo.stats()
        assert (stats["spooled"], stats["exported"]) == (3, 0)
        assert "SSLError" in stats["last_error"]
        assert len(receiver.spans()) == 3


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_collector_in_another_process_gets_the_run(protocol):
    """The receiver in its own process (no shared interpreter): the run arrives whole, with retries."""
    with ReceiverProcess(protocol) as receiver:
        receiver.set_behaviour(503, retry_after="0")
        trodo.init(
            endpoint=receiver.url,
            protocol="grpc" if protocol == "grpc" else "http/protobuf",
            schedule_delay_ms=20,
        )
        bot = _agent()
        with capture() as local:
            bot("hi")
        assert trodo.flush(0.3) is False  # refused so far
        receiver.set_behaviour(200)
        assert trodo.flush(5.0) is True
        assert Capture().tree(KEYS, spans=receiver.spans()) == local.tree(KEYS)
