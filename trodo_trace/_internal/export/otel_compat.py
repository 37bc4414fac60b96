"""The one place that knows which OpenTelemetry SDK release is installed.

The supported range (``opentelemetry-sdk>=1.27``) spans an API break in the logs SDK: up to 1.38
a log record for the exporters is ``LogData(log_record=sdk LogRecord(...), instrumentation_scope)``;
1.39 removed ``LogData`` and takes ``ReadableLogRecord(log_record=api LogRecord(...), resource,
instrumentation_scope)``. Everything else builds log records through :func:`log_record`, which picks
the form by the installed version, read once.

The SDK's private names we cannot do without are reached here only, each with a fallback:
``TracerProvider._active_span_processor`` (dual export hands finished spans to a user's provider's
processors; there is no public accessor) and ``resources._DEFAULT_RESOURCE`` (the SDK's default
resource, for building one at interpreter exit). The suite runs on both ends of the range (the
newest in the locks, the oldest in ``requirements/oldest-py3.10.txt``).

Imported only on the export thread (it loads the OpenTelemetry SDK).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from opentelemetry._logs import SeverityNumber


def _release(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


SDK_VERSION = _release(version("opentelemetry-sdk"))
READABLE_LOG_RECORD = SDK_VERSION >= (1, 39)  # LogData gone, ReadableLogRecord in its place


def log_record(
    *,
    timestamp: int,
    severity_text: str,
    severity_number: int,
    body: Any,
    attributes: dict[str, Any],
    event_name: str | None,
    trace_id: int,
    span_id: int,
    trace_flags: int,
    resource: Any,
    scope: Any,
) -> Any:
    """A log record the installed SDK's OTLP log encoder accepts (zero ``trace_id``: no span)."""
    if READABLE_LOG_RECORD:
        return _readable_log_record(
            timestamp, severity_text, severity_number, body, attributes, event_name,
            trace_id, span_id, trace_flags, resource, scope,
        )  # fmt: skip
    return _log_data(
        timestamp, severity_text, severity_number, body, attributes,
        trace_id, span_id, trace_flags, resource, scope,
    )  # fmt: skip


def _readable_log_record(
    timestamp: int,
    severity_text: str,
    severity_number: int,
    body: Any,
    attributes: dict[str, Any],
    event_name: str | None,
    trace_id: int,
    span_id: int,
    trace_flags: int,
    resource: Any,
    scope: Any,
) -> Any:
    from opentelemetry import trace as trace_api
    from opentelemetry._logs import LogRecord
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import ReadableLogRecord  # type: ignore[attr-defined,unused-ignore]
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    span = (
        NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(trace_flags)))
        if trace_id and span_id
        else trace_api.INVALID_SPAN
    )
    return ReadableLogRecord(
        log_record=LogRecord(
            timestamp=timestamp,
            observed_timestamp=timestamp,
            context=trace_api.set_span_in_context(span, Context()),
            severity_text=severity_text,
            severity_number=SeverityNumber(severity_number),
            body=body,
            attributes=attributes,
            event_name=event_name,
        ),
        resource=resource,
        instrumentation_scope=scope,
    )


def _log_data(
    timestamp: int,
    severity_text: str,
    severity_number: int,
    body: Any,
    attributes: dict[str, Any],
    trace_id: int,
    span_id: int,
    trace_flags: int,
    resource: Any,
    scope: Any,
) -> Any:
    from opentelemetry.sdk._logs import LogData  # type: ignore[attr-defined,unused-ignore]
    from opentelemetry.sdk._logs import LogRecord as SdkLogRecord  # type: ignore[attr-defined,unused-ignore]
    from opentelemetry.trace import TraceFlags

    record = SdkLogRecord(
        timestamp=timestamp,
        observed_timestamp=timestamp,
        trace_id=trace_id,
        span_id=span_id,
        trace_flags=TraceFlags(trace_flags),
        severity_text=severity_text,
        severity_number=SeverityNumber(severity_number),
        body=body,
        resource=resource,
        attributes=attributes,
    )
    return LogData(log_record=record, instrumentation_scope=scope)


def active_span_processor(provider: Any) -> Any | None:
    """The SDK ``TracerProvider``'s composite span processor (``None`` for any other provider)."""
    processor = getattr(provider, "_active_span_processor", None)
    return processor if callable(getattr(processor, "on_end", None)) else None


def default_resource() -> Any:
    """The SDK's default resource (``telemetry.sdk.*``), or an empty one if the SDK hides it."""
    from opentelemetry.sdk import resources

    return getattr(resources, "_DEFAULT_RESOURCE", None) or resources.Resource.get_empty()
