"""One OTLP request at a time, through the OpenTelemetry exporters' own encoders and clients.

For each signal we build the stock OpenTelemetry exporter, so endpoint handling, TLS files,
compression, headers and the HTTP/gRPC transport are theirs, and use its single-request pieces:

* ``http/protobuf``: the exporter's ``_OTLPHTTPClient`` POSTs once (``_submit``; older exporter
  releases: ``OTLPSpanExporter._export``). Its ``export`` method, which loops with its own backoff,
  is never called. (``_submit`` re-sends at once, within the same deadline, when a pooled
  keep-alive connection turns out to be stale: a reconnect, not a retry.)
* ``grpc``: a unary call on the exporter's channel sends the already-encoded request bytes to
  ``.../Export`` (no retry policy configured on the channel).

Encoding is the exporters' (``encode_spans`` / ``encode_logs``); the bytes are what the spool keeps.
There is exactly one retry policy, ours (:mod:`.delivery`): a sender only reports what one
attempt did, as an :class:`Attempt`.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .redact import redact_secrets

RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_EXCERPT = 200

#: Per signal: OTLP/HTTP path, gRPC method, protobuf response class (module, name) and its
#: partial-success counter field.
SIGNALS: dict[str, dict[str, str]] = {
    "traces": {
        "path": "/v1/traces",
        "method": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "response": "opentelemetry.proto.collector.trace.v1.trace_service_pb2:ExportTraceServiceResponse",
        "rejected_field": "rejected_spans",
    },
    "logs": {
        "path": "/v1/logs",
        "method": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        "response": "opentelemetry.proto.collector.logs.v1.logs_service_pb2:ExportLogsServiceResponse",
        "rejected_field": "rejected_log_records",
    },
}


@dataclass
class Attempt:
    """What one request did."""

    ok: bool
    retryable: bool = False
    status: str = ""
    retry_after: float | None = None
    rejected: int = 0
    detail: str = ""

    @property
    def summary(self) -> str:
        text = f"{self.status}: {self.detail}" if self.detail else self.status
        return text[: _EXCERPT + 40]


@dataclass(frozen=True)
class TransportOptions:
    """Where and how to send one signal."""

    protocol: str
    url: str
    headers: Mapping[str, str]
    compression: str
    certificate_file: str | None = None
    client_certificate_file: str | None = None
    client_key_file: str | None = None
    timeout_s: float = 10.0


def _response_class(signal: str) -> Any:
    module, _, name = SIGNALS[signal]["response"].partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _encoder(signal: str) -> Any:
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        return encode_spans
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    return encode_logs


def _excerpt(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = "".join(ch if ch.isprintable() else " " for ch in text[:_EXCERPT]).strip()
    return redact_secrets(text)


class Sender:
    """Encodes and sends one signal; thread-safe (one request at a time)."""

    def __init__(self, signal: str, options: TransportOptions):
        self.signal = signal
        self.options = options
        self._encode = _encoder(signal)
        self._response = _response_class(signal)
        self._rejected_field = SIGNALS[signal]["rejected_field"]
        self._lock = threading.Lock()

    def encode(self, items: Sequence[Any]) -> bytes:
        """The OTLP request for ``items`` (``ReadableSpan`` or log records), serialised."""
        return self._encode(items).SerializePartialToString()

    def send(self, body: bytes, timeout: float) -> Attempt:
        with self._lock:
            try:
                return self._send(body, max(timeout, 0.001))
            except Exception as exc:  # a transport bug must not kill the worker: retry later
                return Attempt(False, True, type(exc).__name__, detail=_excerpt(str(exc)))

    def _send(self, body: bytes, timeout: float) -> Attempt:  # pragma: no cover - abstract
        raise NotImplementedError

    def _partial(self, data: bytes) -> tuple[int, str]:
        if not data:
            return 0, ""
        try:
            response = self._response.FromString(data)
        except Exception:
            return 0, ""
        if not response.HasField("partial_success"):
            return 0, ""
        partial = response.partial_success
        return int(getattr(partial, self._rejected_field)), _excerpt(partial.error_message)

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class HttpSender(Sender):
    """``http/protobuf`` through ``opentelemetry-exporter-otlp-proto-http``."""

    def __init__(self, signal: str, options: TransportOptions):
        super().__init__(signal, options)
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Exporter
        from opentelemetry.exporter.otlp.proto.http import Compression

        compression = {"gzip": Compression.Gzip, "deflate": Compression.Deflate}.get(
            options.compression, Compression.NoCompression
        )
        self._exporter = Exporter(
            endpoint=options.url,
            certificate_file=options.certificate_file,
            client_key_file=options.client_key_file,
            client_certificate_file=options.client_certificate_file,
            headers=dict(options.headers),
            timeout=options.timeout_s,
            compression=compression,
            session=_session(pin_verify=bool(options.certificate_file)),
        )
        client = getattr(self._exporter, "_client", None)
        if client is not None and hasattr(client, "_submit") and hasattr(client, "_compress"):
            self._client = client
        elif hasattr(self._exporter, "_export"):
            self._client = None  # releases before the shared HTTP client: one POST per _export
        else:  # pragma: no cover - an exporter release we do not know
            raise RuntimeError("unsupported opentelemetry-exporter-otlp-proto-http release")

    def _send(self, body: bytes, timeout: float) -> Attempt:
        client = self._client
        if client is not None:
            # The client was built with gzip (its headers say so). On OTLP protobuf, level 1 gets
            # within 0.4 points of level 6's ratio (7.5% vs 7.1% of the body) at half its cost, and
            # level 6 within a point of the default 9 at half of that.
            data = gzip.compress(body, 1) if self.options.compression == "gzip" else client._compress(body)
            result = client._submit(data, timeout)
            status, error = result.status_code, result.error
            if status is None:
                return Attempt(
                    False, True, type(error).__name__ if error else "no response", detail=_excerpt(str(error))
                )
            content = _safe(result.content)
            headers = _safe(result.headers) or {}
        else:  # pragma: no cover - older exporter releases
            try:
                response = self._exporter._export(body, timeout)
            except TypeError:
                response = self._exporter._export(body)
            except Exception as exc:
                return Attempt(False, True, type(exc).__name__, detail=_excerpt(str(exc)))
            status, content, headers = response.status_code, response.content, response.headers
        if 200 <= status < 300:
            rejected, message = self._partial(content)
            return Attempt(True, status=str(status), rejected=rejected, detail=message)
        retryable = status in RETRYABLE_HTTP
        retry_after = parse_retry_after(headers.get("retry-after")) if retryable else None
        return Attempt(False, retryable, str(status), retry_after, detail=_error_text(content))

    def close(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception:
            pass


def _session(pin_verify: bool) -> Any:
    """A requests session for the exporter when a CA file is configured (``None``: the exporter's own).

    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment must not replace the configured
    CA file, which plain requests sessions let them do."""
    if not pin_verify:
        return None
    import requests

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    return PinnedVerifySession()


def _safe(getter: Any) -> Any:
    try:
        return getter()
    except Exception:
        return None


def _error_text(content: bytes | None) -> str:
    """A readable excerpt of an error body (an OTLP ``google.rpc.Status`` or plain text)."""
    if not content:
        return ""
    try:
        from google.rpc.status_pb2 import Status

        status = Status.FromString(content)
        if status.message:
            return _excerpt(status.message)
    except Exception:
        pass
    return _excerpt(content)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); ``None`` if absent.

    Example:
        >>> parse_retry_after("3")
        3.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    import time
    from datetime import timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - time.time(), 0.0)


class GrpcSender(Sender):
    """``grpc`` through ``opentelemetry-exporter-otlp-proto-grpc`` (its channel, credentials, headers)."""

    def __init__(self, signal: str, options: TransportOptions):
        super().__init__(signal, options)
        try:
            import grpc

            if signal == "traces":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as Exporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                    OTLPLogExporter as Exporter,
                )
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "protocol 'grpc' needs the grpc exporter: pip install 'trodo-trace[grpc]'"
            ) from exc
        self._grpc = grpc
        credentials = None
        if options.certificate_file or options.client_certificate_file:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(options.certificate_file),
                private_key=_read(options.client_key_file),
                certificate_chain=_read(options.client_certificate_file),
            )
        self._exporter = Exporter(
            endpoint=options.url,
            credentials=credentials,
            headers=dict(options.headers),
            timeout=options.timeout_s,
            compression=grpc.Compression.Gzip
            if options.compression == "gzip"
            else grpc.Compression.NoCompression,
        )
        self._retryable = {
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DATA_LOSS,
        }
        self._bind()

    def _bind(self) -> None:
        self._call = self._exporter._channel.unary_unary(
            SIGNALS[self.signal]["method"], request_serializer=None, response_deserializer=None
        )

    def _send(self, body: bytes, timeout: float) -> Attempt:
        grpc = self._grpc
        try:
            data = self._call(body, metadata=tuple(self.options.headers.items()), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            retry_after = _grpc_retry_delay(error)
            retryable = code in self._retryable or (
                code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None
            )
            if code is grpc.StatusCode.UNAVAILABLE:
                self._reconnect()
            return Attempt(False, retryable, code.name, retry_after, detail=_excerpt(error.details() or ""))
        rejected, message = self._partial(data)
        return Attempt(True, status="OK", rejected=rejected, detail=message)

    def _reconnect(self) -> None:
        """A fresh channel, so a collector that comes back is used at once (not after gRPC's own backoff)."""
        try:
            self._exporter._channel.close()
            self._exporter._initialize_channel_and_stub()
            self._bind()
        except Exception:
            pass

    def close(self) -> None:
        try:
            self._exporter._channel.close()
        except Exception:
            pass


def _grpc_retry_delay(error: Any) -> float | None:
    try:
        metadata = dict(error.trailing_metadata() or ())
    except Exception:
        return None
    raw = metadata.get("google.rpc.retryinfo-bin")
    if raw is None:
        return None
    try:
        from google.rpc.error_details_pb2 import RetryInfo

        info = RetryInfo.FromString(raw)
        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:
        return None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def make_sender(signal: str, options: TransportOptions) -> Sender:
    """The sender for ``options.protocol`` (``http/protobuf`` or ``grpc``)."""
    if options.protocol == "grpc":
        return GrpcSender(signal, options)
    return HttpSender(signal, options)
