"""Log records through the same OTLP path as spans: make_log_export, its endpoint, spool and retries."""

from __future__ import annotations

import time

import pytest
from otlp_receiver import Behaviour, OtlpReceiver, free_port

import trodo_trace as trodo
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace._internal.export import otlp
from trodo_trace._internal.export.otel_compat import log_record
from trodo_trace._internal.export.pipeline import Pipeline
from trodo_trace._internal.runtime import SCOPE


def _record(name, distinct_id="u-1", **body):
    runtime = runtime_mod.get()
    return log_record(
        timestamp=time.time_ns(),
        severity_text="INFO",
        severity_number=9,
        body=body,
        attributes={"event.name": name, "trodo.distinct_id": distinct_id},
        event_name=name,
        trace_id=0,
        span_id=0,
        trace_flags=0,
        resource=runtime.resource,
        scope=SCOPE,
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_log_records_reach_the_logs_endpoint_with_retries(protocol):
    """make_log_export sends to /v1/logs (or the gRPC logs service) and retries a 503 like spans do."""
    with OtlpReceiver(protocol) as receiver:
        trodo.init(endpoint=receiver.url, protocol="grpc" if protocol == "grpc" else "http/protobuf")
        export = otlp.make_log_export(runtime_mod.get())
        receiver.script(Behaviour(503, retry_after="0"))
        assert export([_record("signup", plan="pro"), _record("upgrade", plan="team")]) is True
        assert [r.path for r in receiver.requests] == ["/v1/logs", "/v1/logs"]
        assert [
            (log["event_name"], log["body"], log["attributes"]["trodo.distinct_id"])
            for log in receiver.logs()
        ] == [
            ("signup", {"plan": "pro"}, "u-1"),
            ("upgrade", {"plan": "team"}, "u-1"),
        ]
        assert export.stats()["exported"] == 2 and export.stats()["retries"] == 1
        assert trodo.stats()["exported"] == 0  # span counts are separate


def test_a_logs_endpoint_is_used_as_is():
    """logs_endpoint (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) is the full URL for log records."""
    with OtlpReceiver("http") as receiver:
        trodo.init(endpoint=f"http://127.0.0.1:{free_port()}", logs_endpoint=f"{receiver.url}/custom/logs")
        export = otlp.make_log_export(runtime_mod.get())
        assert export([_record("signup")]) is True
        assert [r.path for r in receiver.requests] == ["/custom/logs"]


def test_log_records_wait_in_the_spool_and_go_out_with_a_pipeline():
    """Through a Pipeline with the export's hooks: records spooled while the collector is down arrive later."""
    port = free_port()
    trodo.init(
        endpoint=f"http://127.0.0.1:{port}",
        schedule_delay_ms=20,
        export_timeout_ms=300,
        attempt_timeout_ms=100,
    )
    export = otlp.make_log_export(runtime_mod.get())
    pipeline = Pipeline(
        export, batch_size=10, interval_s=0.02, max_queue=100, name="test-logs", **export.pipeline_hooks()
    )
    export.bind(pipeline)
    for i in range(25):
        pipeline.submit(_record(f"event-{i}"))
    pipeline.flush(3.0)
    assert export.stats()["spooled"] == 25
    with OtlpReceiver("http", port=port) as receiver:
        assert pipeline.flush(3.0) and export.flush(3.0)
        assert sorted(log["event_name"] for log in receiver.logs()) == sorted(f"event-{i}" for i in range(25))
        assert export.stats()["exported"] == 25 and export.stats()["spooled"] == 0
    pipeline.shutdown(1.0)


def test_make_log_export_without_an_endpoint_says_so():
    """With the local store (no endpoint) there is nowhere to send log records over OTLP."""
    trodo.init()
    with pytest.raises(ValueError, match="logs"):
        otlp.make_log_export(runtime_mod.get())
