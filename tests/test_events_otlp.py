"""Events over OTLP: log records on the wire, batching by size/interval/flush, retries and spool, load."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from otlp_receiver import Behaviour, OtlpReceiver, any_value

import trodo_trace as trodo
from trodo_trace._internal.events import auto as autoevents
from trodo_trace._internal.events import sink as event_sink
from trodo_trace.testing import capture


@pytest.fixture(autouse=True)
def _no_hooks_left():
    """No test leaves exception hooks installed."""
    yield
    autoevents.uninstall()


@pytest.fixture(params=["http", "grpc"])
def receiver(request):
    with OtlpReceiver(request.param) as server:
        yield server


@pytest.fixture
def http_receiver():
    with OtlpReceiver("http") as server:
        yield server


def _protocol(receiver: OtlpReceiver) -> str:
    return "grpc" if receiver.protocol == "grpc" else "http/protobuf"


def log_batches(receiver: OtlpReceiver) -> list[int]:
    """Log records per accepted request, in arrival order."""
    return [r.items for r in receiver.requests if r.accepted and r.path.endswith("logs")]


def wait_for_logs(receiver: OtlpReceiver, count: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while sum(log_batches(receiver)) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wire_records(receiver: OtlpReceiver) -> list[dict]:
    """Every accepted log record with its resource and scope, decoded from the raw requests."""
    records = []
    for request in receiver.requests:
        if not (request.accepted and request.path.endswith("logs")):
            continue
        message = logs_service_pb2.ExportLogsServiceRequest.FromString(request.body)
        for resource_logs in message.resource_logs:
            resource = {kv.key: any_value(kv.value) for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    records.append(
                        {
                            "resource": {
                                k: resource[k] for k in ("service.name", "trodo.site_id") if k in resource
                            },
                            "scope": scope_logs.scope.name,
                            # No event_name field before opentelemetry-proto 1.28: event.name only.
                            "event_name": getattr(record, "event_name", None)
                            or next(
                                kv.value.string_value for kv in record.attributes if kv.key == "event.name"
                            ),
                            "severity_text": record.severity_text,
                            "severity_number": record.severity_number,
                            "attributes": {
                                kv.key: any_value(kv.value)
                                for kv in record.attributes
                                if kv.key != "trodo.event.id"
                            },
                            "event_id": any_value(
                                next(kv.value for kv in record.attributes if kv.key == "trodo.event.id")
                            ),
                            "body_kind": record.body.WhichOneof("value"),
                            "body": any_value(record.body),
                            "trace_id": record.trace_id.hex(),
                            "span_id": record.span_id.hex(),
                            "has_time": record.time_unix_nano > 0,
                        }
                    )
    return records


def test_events_are_otlp_log_records_with_the_wire_contract(receiver):
    """track() sends a log record: event name, distinct id, category, run id, trace context, kvlist body."""
    trodo.init(endpoint=receiver.url, protocol=_protocol(receiver), service_name="shop", site_id="site-9")
    with capture() as traces:

        @trodo.agent("checkout-bot")
        def bot() -> None:
            trodo.for_user("u-1").track(
                "payment_captured", {"amount": 12.5, "items": [{"sku": "A"}], "ok": True}
            )

        bot()
    trodo.track("u-2", "signup_completed", category="growth")
    assert trodo.flush(5.0) is True
    run = traces.runs()[0]
    records = wire_records(receiver)
    for record in records:
        assert len(record.pop("event_id")) == 32
    common = {"resource": {"service.name": "shop", "trodo.site_id": "site-9"}, "scope": "trodo_trace"}
    assert records == [
        {
            **common,
            "event_name": "payment_captured",
            "severity_text": "INFO",
            "severity_number": 9,
            "attributes": {
                "event.name": "payment_captured",
                "trodo.distinct_id": "u-1",
                "trodo.event.category": "custom",
                "trodo.run.id": run.run_id,
            },
            "body_kind": "kvlist_value",
            "body": {"amount": 12.5, "items": [{"sku": "A"}], "ok": True},
            "trace_id": run.trace_id,
            "span_id": run.span_id,
            "has_time": True,
        },
        {
            **common,
            "event_name": "signup_completed",
            "severity_text": "INFO",
            "severity_number": 9,
            "attributes": {
                "event.name": "signup_completed",
                "trodo.distinct_id": "u-2",
                "trodo.event.category": "growth",
            },
            "body_kind": "kvlist_value",
            "body": {},
            "trace_id": "",
            "span_id": "",
            "has_time": True,
        },
    ]


def test_server_error_severity_maps_to_otlp_severity(http_receiver):
    """capture_error severities warning/error/critical become OTLP WARN/ERROR/FATAL."""
    trodo.init(endpoint=http_receiver.url)
    user = trodo.for_user("u-1")
    for severity in ("warning", "error", "critical"):
        user.capture_error(ValueError(severity), severity=severity)
    trodo.flush(5.0)
    assert [
        (r["severity_text"], r["severity_number"], r["body"]["severity"]) for r in wire_records(http_receiver)
    ] == [
        ("WARN", 13, "warning"),
        ("ERROR", 17, "error"),
        ("FATAL", 21, "critical"),
    ]


@pytest.mark.serial
def test_batches_by_size_then_rest_on_flush(http_receiver):
    """Below batch_size nothing leaves; the batch_size-th event sends a full batch; flush() sends the rest."""
    trodo.init(endpoint=http_receiver.url, batch_size=4, batch_flush_interval_ms=60_000)
    for index in range(3):
        trodo.track("u-1", "sized_event", {"index": index})
    time.sleep(0.2)
    assert log_batches(http_receiver) == []
    trodo.track("u-1", "sized_event", {"index": 3})
    assert wait_for_logs(http_receiver, 4)
    # Let the worker finish its round (it drains whatever is queued when it is awake), so the
    # next two events find it asleep.
    deadline = time.monotonic() + 10
    while trodo.stats()["events_exported"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    for index in range(4, 6):
        trodo.track("u-1", "sized_event", {"index": index})
    time.sleep(0.2)
    assert log_batches(http_receiver) == [4]
    assert trodo.flush(5.0) is True
    assert log_batches(http_receiver) == [4, 2]
    assert [r["body"]["index"] for r in http_receiver.logs()] == list(range(6))


@pytest.mark.serial
def test_batches_by_interval(http_receiver):
    """A partial batch leaves when batch_flush_interval_ms has passed, in one request."""
    trodo.init(endpoint=http_receiver.url, batch_size=1000, batch_flush_interval_ms=150)
    for index in range(3):
        trodo.track("u-1", "timed_event", {"index": index})
    assert wait_for_logs(http_receiver, 3, timeout=5.0)
    assert log_batches(http_receiver) == [3]


def test_batching_off_sends_before_track_returns(http_receiver):
    """With batch_enabled=False the receiver has each event when track() returns."""
    trodo.init(endpoint=http_receiver.url, batch_enabled=False, batch_flush_interval_ms=60_000)
    for index in range(3):
        trodo.track("u-1", "sync_event", {"index": index})
        assert log_batches(http_receiver) == [1] * (index + 1)


@pytest.mark.serial
def test_batching_off_wait_is_bounded(http_receiver, monkeypatch):
    """With batching off, a collector that never answers holds track() for the bounded wait only."""
    monkeypatch.setattr(event_sink, "SYNC_TIMEOUT_S", 0.3)
    http_receiver.set_behaviour(blackhole=True)
    trodo.init(
        endpoint=http_receiver.url,
        batch_enabled=False,
        export_timeout_ms=1000,
        attempt_timeout_ms=1000,
        spool_max_bytes=0,
    )
    started = time.monotonic()
    trodo.track("u-1", "stuck_event")
    assert 0.25 <= time.monotonic() - started < 1.0


def test_events_survive_a_collector_outage_through_retries(http_receiver):
    """A 503 then success: the batch is retried by the span exporter's policy and arrives once."""
    http_receiver.script(Behaviour(status=503))
    trodo.init(endpoint=http_receiver.url)
    trodo.track("u-1", "retried_event")
    assert trodo.flush(10.0) is True
    assert [r.status for r in http_receiver.requests] == [503, 200]
    assert [r["event_name"] for r in http_receiver.logs()] == ["retried_event"]
    assert trodo.stats()["events_exported"] == 1


def test_events_spooled_during_outage_are_sent_later(http_receiver):
    """Events that could not be delivered go to the disk spool and reach the collector once it is back."""
    http_receiver.set_behaviour(status=503)
    trodo.init(endpoint=http_receiver.url, export_timeout_ms=300, attempt_timeout_ms=200)
    for index in range(3):
        trodo.track("u-1", "spooled_event", {"index": index})
    trodo.flush(2.0)
    assert trodo.stats()["events_spooled"] == 3
    http_receiver.set_behaviour(status=200)
    deadline = time.monotonic() + 15
    while trodo.stats()["events_exported"] < 3 and time.monotonic() < deadline:
        trodo.flush(1.0)
    assert sorted(r["body"]["index"] for r in http_receiver.logs()) == [0, 1, 2]
    assert trodo.stats()["events_spooled"] == 0


def test_concurrent_tracking_from_8_threads_reaches_the_receiver(http_receiver):
    """8 threads tracking 10,000 events in all: the receiver gets every one, once."""
    trodo.init(endpoint=http_receiver.url, batch_size=500, batch_flush_interval_ms=100)
    per_thread = 1250
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            trodo.track(f"user-{index}", "load_event", {"n": n})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trodo.flush(30.0) is True
    records = http_receiver.logs()
    assert len(records) == 10_000
    ids = {r["attributes"]["trodo.event.id"] for r in records}
    assert len(ids) == 10_000
    per_user: dict[str, list[int]] = {}
    for record in records:
        per_user.setdefault(record["attributes"]["trodo.distinct_id"], []).append(record["body"]["n"])
    assert {user: sorted(ns) for user, ns in per_user.items()} == {
        f"user-{i}": list(range(per_thread)) for i in range(8)
    }
    stats = trodo.stats()
    assert (stats["events_exported"], stats["events_dropped"], stats["events_failed"]) == (10_000, 0, 0)


def test_events_go_to_logs_endpoint_only_when_set(http_receiver):
    """logs_endpoint alone sends events over OTLP while spans stay in the local store."""
    trodo.init(logs_endpoint=http_receiver.url + "/v1/logs")
    trodo.track("u-1", "routed_event")
    trodo.flush(5.0)
    assert [r["event_name"] for r in http_receiver.logs()] == ["routed_event"]
    assert trodo.stats()["exporter"].startswith("local store")
