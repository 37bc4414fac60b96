"""Version shims and the oldest supported releases: the log-record shim, and the pins that test it."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from otlp_receiver import decode_logs

from trodo_trace._internal.export import otel_compat

ROOT = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    """``name -> lower bound`` of the runtime requirements and the grpc extra in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    runtime = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S)
    grpc = re.search(r"^grpc = \[(.*?)\]", text, re.M | re.S)
    assert runtime and grpc
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][^",;\s]*)', runtime.group(1) + grpc.group(1)))


def test_the_oldest_lock_pins_the_lower_bounds_of_pyproject():
    """requirements/oldest.in pins each core dependency at exactly pyproject.toml's lower bound."""
    bounds = _lower_bounds()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements/oldest.in").read_text(), re.M))
    core = [
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-exporter-otlp-proto-grpc",
        "tenacity",
        "requests",
    ]
    assert {name: pins.get(name) for name in core} == {
        name: bounds[name] + (".0" if bounds[name].count(".") == 1 else "") for name in core
    }


def test_the_shim_picks_the_form_of_the_installed_sdk():
    """ReadableLogRecord from opentelemetry-sdk 1.39 on, LogData before: read from the installed version."""
    installed = tuple(int(part) for part in version("opentelemetry-sdk").split(".")[:2])
    assert otel_compat.SDK_VERSION == installed
    assert otel_compat.READABLE_LOG_RECORD is (installed >= (1, 39))


def test_a_shim_log_record_encodes_with_the_installed_encoder():
    """A record built by the shim goes through the SDK's own OTLP encoder with every field intact."""
    resource = Resource.create({"service.name": "compat"})
    scope = InstrumentationScope("trodo_trace", "1")
    records = [
        otel_compat.log_record(
            timestamp=1_700_000_000_000_000_000,
            severity_text="INFO",
            severity_number=9,
            body={"plan": "pro", "seats": 3},
            attributes={"event.name": "signup", "trodo.distinct_id": "u-1"},
            event_name="signup",
            trace_id=0x0123456789ABCDEF0123456789ABCDEF,
            span_id=0x0123456789ABCDEF,
            trace_flags=1,
            resource=resource,
            scope=scope,
        ),
        otel_compat.log_record(
            timestamp=1_700_000_000_000_000_001,
            severity_text="ERROR",
            severity_number=17,
            body={"error_type": "ValueError"},
            attributes={"event.name": "server_error", "trodo.distinct_id": "server_global"},
            event_name="server_error",
            trace_id=0,
            span_id=0,
            trace_flags=0,
            resource=resource,
            scope=scope,
        ),
    ]
    decoded = decode_logs(encode_logs(records).SerializeToString())
    assert decoded == [
        {
            "body": {"plan": "pro", "seats": 3},
            "attributes": {"event.name": "signup", "trodo.distinct_id": "u-1"},
            "event_name": "signup",
            "trace_id": "0123456789abcdef0123456789abcdef",
            "span_id": "0123456789abcdef",
            "time_unix_nano": 1_700_000_000_000_000_000,
        },
        {
            "body": {"error_type": "ValueError"},
            "attributes": {"event.name": "server_error", "trodo.distinct_id": "server_global"},
            "event_name": "server_error",
            "trace_id": "",
            "span_id": "",
            "time_unix_nano": 1_700_000_000_000_000_001,
        },
    ]


def test_the_sdk_private_names_we_use_are_still_there():
    """The SDK provider's span processor and default resource are found on this release."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NoOpTracerProvider

    assert otel_compat.active_span_processor(TracerProvider()) is not None
    assert otel_compat.active_span_processor(NoOpTracerProvider()) is None
    assert otel_compat.default_resource().attributes["telemetry.sdk.language"] == "python"
