"""OTLP export: builds the span export (:func:`span_export`, called by the runtime) and log-record export.

When an endpoint is configured, spans leave through the runtime's pipeline worker into a
:class:`~.delivery.SignalDelivery` (retries, disk spool, at-least-once delivery), which encodes and
sends over requests or grpcio (:mod:`.otlp_transport`): span bytes written by :mod:`.encode`,
log records by OpenTelemetry's encoder.

Endpoints follow the OTLP exporter specification: a base endpoint (``endpoint=``, ``TRODO_ENDPOINT``,
``OTEL_EXPORTER_OTLP_ENDPOINT``) gets ``/v1/traces`` or ``/v1/logs`` appended for
``http/protobuf``; a signal endpoint (``traces_endpoint`` / ``logs_endpoint`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``) is used as is. For
``grpc`` the endpoint is ``host:port`` (``http://`` means no TLS).

A second signal reuses the same machinery. Events (log records) are exported with::

    from trodo_trace._internal.export import otlp
    from trodo_trace._internal.export.pipeline import Pipeline

    export = otlp.make_log_export(runtime)             # a SignalDelivery for "logs"
    pipeline = Pipeline(export, batch_size=..., interval_s=..., max_queue=...,
                        **export.pipeline_hooks())     # overflow -> spool, idle -> send spool, ...
    export.bind(pipeline)

``export(records)`` takes a sequence of ``opentelemetry.sdk._logs.ReadableLogRecord`` (``LogData``
on SDK releases that still have it) and returns ``True`` when the batch was delivered or spooled;
the same retry policy, spool (files tagged ``logs``), drain and shutdown hand-over apply.
``export.stats()`` gives its counts; ``export.flush(timeout)`` waits for its spool.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse, urlunparse

from ..core.errors import log_once
from .delivery import SignalDelivery
from .hub import Hub, new_owner
from .otlp_transport import SIGNALS, TransportOptions, make_sender
from .spool import Spool

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger("trodo_trace")

SITE_HEADER = "x-trodo-site-id"


def signal_url(config: Config, signal: str) -> str | None:
    """Where ``signal`` (``traces`` or ``logs``) is sent, by the OTLP specification's rules.

    Example:
        >>> from trodo_trace._internal.config import resolve
        >>> signal_url(resolve({"endpoint": "http://127.0.0.1:4318"}, environ={}), "traces")
        'http://127.0.0.1:4318/v1/traces'
    """
    specific = config.traces_endpoint if signal == "traces" else config.logs_endpoint
    if specific:
        return specific
    base = config.endpoint
    if not base:
        return None
    if config.protocol == "grpc":
        return base
    return base.rstrip("/") + SIGNALS[signal]["path"]


def safe_url(url: str) -> str:
    """``url`` without user info (a password in the endpoint never reaches a log line)."""
    parsed = urlparse(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urlunparse(parsed._replace(netloc=netloc))


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_options(config: Any, signal: str) -> TransportOptions:
    url = signal_url(config, signal)
    if url is None:
        raise ValueError(f"no OTLP endpoint for {signal}: set endpoint or {signal}_endpoint")
    headers = dict(config.headers or {})
    if config.site_id:
        headers[SITE_HEADER] = config.site_id
    parsed = urlparse(url)
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        log_once(
            "plaintext:" + signal,
            "trodo_trace: exporting %s to %s over plain http: spans and headers travel unencrypted; "
            "use an https endpoint for a collector that is not on this machine",
            signal,
            safe_url(url),
        )
    return TransportOptions(
        protocol=config.protocol,
        url=url,
        headers=headers,
        compression=config.compression,
        certificate_file=config.certificate_file,
        client_certificate_file=config.client_certificate_file,
        client_key_file=config.client_key_file,
        timeout_s=config.attempt_timeout_ms / 1000.0,
    )


def spool_directory(runtime: Any) -> Path:
    """``<store dir>/spool/<destination key>/``: one spool per destination, so batches spooled for
    one collector are never sent to another."""
    config = runtime.config
    root = Path(config.spool_dir).expanduser() if config.spool_dir else runtime.store_path.parent / "spool"
    identity = "|".join(
        str(part)
        for part in (
            config.protocol,
            signal_url(config, "traces"),
            signal_url(config, "logs"),
            config.site_id,
        )
    )
    return root.absolute() / hashlib.sha256(identity.encode()).hexdigest()[:16]


def _hub(runtime: Any) -> Hub:
    hub: Hub | None = getattr(runtime, "otlp_hub", None)
    if hub is not None:
        return hub
    config = runtime.config
    owner = new_owner()
    spool = None
    if config.spool_max_bytes > 0:
        destination = f"{config.protocol} {safe_url(signal_url(config, 'traces') or '')}"
        spool = Spool(spool_directory(runtime), config.spool_max_bytes, owner, destination)
    options: dict[str, TransportOptions] = {}

    def sender_factory(signal: str) -> Any:
        if signal not in options:
            options[signal] = transport_options(config, signal)
        return make_sender(signal, options[signal])

    hub = Hub(spool, sender_factory, attempt_timeout_s=config.attempt_timeout_ms / 1000.0, owner=owner)
    runtime.otlp_hub = hub
    return hub


def span_export(runtime: Any) -> tuple[str, SignalDelivery, Callable[[], None] | None]:
    """The OTLP span export of ``runtime``: its description, the delivery and its close hook."""
    config = runtime.config
    options = transport_options(config, "traces")  # validates and warns now, not on the worker
    hub = _hub(runtime)
    delivery = SignalDelivery(
        hub,
        "traces",
        runtime.convert_spans,
        batch_size=config.max_export_batch_size,
        max_buffer=config.max_queue_size,
        export_timeout_s=config.export_timeout_ms / 1000.0,
        max_request_bytes=config.max_request_bytes,
    )
    description = f"otlp {config.protocol} {safe_url(options.url)}"
    return description, delivery, delivery.close


def make_log_export(
    runtime: Any, convert: Callable[[list[Any]], list[Any]] = list, *, batch_size: int | None = None
) -> SignalDelivery:
    """The OTLP export of log records for ``runtime`` (see the module docstring).

    ``convert`` turns the items a pipeline queues into ``ReadableLogRecord`` objects (on the export
    thread; identity by default).

    Example:
        >>> from trodo_trace._internal import runtime
        >>> make_log_export(runtime.get())   # no endpoint configured: events go to the local store
        Traceback (most recent call last):
        ...
        ValueError: no OTLP endpoint for logs: set endpoint or logs_endpoint

    Raises:
        ValueError: no OTLP endpoint is configured for logs.
    """
    config = runtime.config
    transport_options(config, "logs")
    existing: Hub | None = getattr(runtime, "otlp_hub", None)
    if existing is not None and "logs" in existing.deliveries:
        return cast(SignalDelivery, existing.deliveries["logs"])  # the deliveries a hub holds are these
    return SignalDelivery(
        _hub(runtime),
        "logs",
        convert,
        batch_size=batch_size or config.batch_size,
        max_buffer=config.max_queue_size,
        export_timeout_s=config.export_timeout_ms / 1000.0,
        max_request_bytes=config.max_request_bytes,
    )
