"""One OTLP request at a time, on public APIs only: requests for HTTP, grpcio for gRPC.

* ``http/protobuf``: one POST per attempt with a ``requests`` session (keep-alive connections,
  the TLS files, the headers). A pooled connection found stale is re-sent to at once, within the
  same deadline: a reconnect, not a retry.
* ``grpc``: a unary call with the already-encoded request bytes to ``.../Export`` on a ``grpcio``
  channel of our own (no retry policy configured on the channel).

Spans are encoded by :mod:`.encode` (trodo's spans written straight to OTLP bytes; a user's
provider's ``ReadableSpan`` objects by OpenTelemetry's ``encode_spans``), log records by
OpenTelemetry's ``encode_logs`` of ``opentelemetry-exporter-otlp-proto-common``; the bytes are what
the spool keeps. The stock
exporters are not used: their single-request pieces are private and change between releases.
There is exactly one retry policy, ours (:mod:`.delivery`): a sender only reports what one
attempt did, as an :class:`Attempt`.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ..version import VERSION
from .redact import redact_secrets

RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
#: Longest wait a collector's ``Retry-After`` (or gRPC RetryInfo) can impose; past it the batch is
#: spooled and sending resumes (a ``Retry-After: 99999`` must not stop exporting for a day).
MAX_RETRY_AFTER_S = 60.0
_UNREACHABLE_HINTS = ("connect", "refused", "unreachable", "name resolution", "dns")
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
    def unreachable(self) -> bool:
        """No connection could be made (refused, no route, unknown host): nobody is listening."""
        if self.status == "ConnectionError":
            return True
        return self.status == "UNAVAILABLE" and any(
            hint in self.detail.lower() for hint in _UNREACHABLE_HINTS
        )

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


_REQUESTS = {
    "traces": "opentelemetry.proto.collector.trace.v1.trace_service_pb2:ExportTraceServiceRequest",
    "logs": "opentelemetry.proto.collector.logs.v1.logs_service_pb2:ExportLogsServiceRequest",
}


def count_items(signal: str, body: bytes) -> int | None:
    """How many spans or log records an encoded request holds (from its content, never from a file
    name); ``None`` when ``body`` is not such a request."""
    module, _, name = _REQUESTS[signal].partition(":")
    try:
        request = getattr(__import__(module, fromlist=[name]), name).FromString(body)
    except Exception:
        return None
    if signal == "traces":
        return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


def _encoder(signal: str) -> Any:
    """``items -> bytes`` for ``signal``."""
    if signal == "traces":
        from .encode import encode_request

        return encode_request
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    def encode(items: Sequence[Any]) -> bytes:
        body: bytes = encode_logs(items).SerializePartialToString()
        return body

    return encode


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
        # Header values (and their repr, as exception messages quote them), longest first.
        values = {v for v in options.headers.values() if len(v.strip()) >= 3}
        self._secrets = sorted(values | {repr(v)[1:-1] for v in values}, key=len, reverse=True)

    def encode(self, items: Sequence[Any]) -> bytes:
        """The OTLP request for ``items`` (encoded spans, ``ReadableSpan`` or log records), serialised."""
        body: bytes = self._encode(items)
        return body

    def send(self, body: bytes, timeout: float) -> Attempt:
        with self._lock:
            try:
                attempt = self._send(body, max(timeout, 0.001))
            except Exception as exc:  # a transport bug must not kill the worker: retry later
                attempt = Attempt(False, True, type(exc).__name__, detail=_excerpt(str(exc)))
        if attempt.detail and self._secrets:
            attempt.detail = self.scrub(attempt.detail)
        if attempt.retry_after is not None and attempt.retry_after > MAX_RETRY_AFTER_S:
            attempt.retry_after = MAX_RETRY_AFTER_S
        return attempt

    def scrub(self, text: str) -> str:
        """``text`` without any header value (an error message may quote one: it is often a secret)."""
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED]")
        return text

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
    """``http/protobuf``: a POST per attempt on a ``requests`` session."""

    def __init__(self, signal: str, options: TransportOptions):
        super().__init__(signal, options)
        import requests

        self._connection_error = requests.exceptions.ConnectionError
        self._session = _session(options.certificate_file)
        if options.client_certificate_file:
            self._session.cert = (
                (options.client_certificate_file, options.client_key_file)
                if options.client_key_file
                else options.client_certificate_file
            )
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": f"trodo-trace/{VERSION}"}
        if options.compression in ("gzip", "deflate"):
            headers["Content-Encoding"] = options.compression
        headers.update(options.headers)
        self._headers = headers
        self._prepared: Any = None
        self._settings: dict[str, Any] = {}
        self._last: tuple[bytes, bytes] | None = None  # (body, compressed): a retry reuses it

    def _compress(self, body: bytes) -> bytes:
        # On OTLP protobuf, gzip level 1 gets within 0.4 points of level 6's ratio (7.5% vs 7.1% of
        # the body) at half its cost, and level 6 within a point of the default 9 at half of that.
        if self.options.compression == "gzip":
            return gzip.compress(body, 1)
        if self.options.compression == "deflate":
            return zlib.compress(body, 1)
        return body

    def _send(self, body: bytes, timeout: float) -> Attempt:
        last = self._last
        if last is not None and last[0] is body:
            data = last[1]
        else:
            data = self._compress(body)
            self._last = (body, data)
        deadline = time.monotonic() + timeout
        try:
            response = self._post(data, timeout)
        except self._connection_error:
            remaining = deadline - time.monotonic()
            if remaining <= 0.001:
                raise
            response = self._post(data, remaining)  # a stale keep-alive connection: reconnect once
        status, content, headers = response.status_code, response.content, response.headers
        if 200 <= status < 300:
            rejected, message = self._partial(content)
            return Attempt(True, status=str(status), rejected=rejected, detail=message)
        retryable = status in RETRYABLE_HTTP
        retry_after = parse_retry_after(headers.get("retry-after")) if retryable else None
        return Attempt(False, retryable, str(status), retry_after, detail=_error_text(content))

    def _post(self, data: bytes, timeout: float) -> Any:
        session = self._session
        if session.cookies:  # a collector that sets cookies (sticky sessions) gets them back
            return session.post(self.options.url, data=data, headers=self._headers, timeout=timeout)
        # The request and its environment settings (proxies, CA bundle, .netrc) are prepared once:
        # preparing them again for every request costs more CPU than the request itself.
        if self._prepared is None:
            import requests

            self._prepared = session.prepare_request(
                requests.Request("POST", self.options.url, headers=self._headers, data=b"")
            )
            self._settings = session.merge_environment_settings(self.options.url, {}, None, None, None)
        request = self._prepared.copy()
        request.prepare_body(data, None)
        return session.send(request, timeout=timeout, **self._settings)

    def close(self) -> None:
        try:
            self._session.close()
        except Exception:
            pass


def _session(certificate_file: str | None) -> Any:
    """A requests session; with a CA file, that file alone verifies the collector.

    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment must not replace a configured CA
    file, which plain requests sessions let them do. Without one, they apply as usual."""
    import requests

    if not certificate_file:
        return requests.Session()

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = PinnedVerifySession()
    session.verify = certificate_file
    return session


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
    """``grpc``: a unary call per attempt on a ``grpcio`` channel (TLS files, headers as metadata)."""

    def __init__(self, signal: str, options: TransportOptions):
        super().__init__(signal, options)
        try:
            import grpc
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "protocol 'grpc' needs the grpc exporter: pip install 'trodo-trace[grpc]'"
            ) from exc
        self._grpc = grpc
        self._target, secure = grpc_target(options.url)
        self._credentials = None
        if secure or options.certificate_file or options.client_certificate_file:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(options.certificate_file),
                private_key=_read(options.client_key_file),
                certificate_chain=_read(options.client_certificate_file),
            )
        self._compression = (
            grpc.Compression.Gzip if options.compression == "gzip" else grpc.Compression.NoCompression
        )
        self._metadata = tuple((key.lower(), value) for key, value in options.headers.items())
        self._retryable = {
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DATA_LOSS,
        }
        self._connect()

    def _connect(self) -> None:
        grpc = self._grpc
        if self._credentials is not None:
            self._channel = grpc.secure_channel(
                self._target, self._credentials, compression=self._compression
            )
        else:
            self._channel = grpc.insecure_channel(self._target, compression=self._compression)
        self._call = self._channel.unary_unary(
            SIGNALS[self.signal]["method"], request_serializer=None, response_deserializer=None
        )

    def _send(self, body: bytes, timeout: float) -> Attempt:
        grpc = self._grpc
        try:
            data = self._call(body, metadata=self._metadata, timeout=timeout)
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
            self._channel.close()
            self._connect()
        except Exception:
            pass

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:
            pass


def grpc_target(url: str) -> tuple[str, bool]:
    """``(host:port, secure)`` for a gRPC endpoint, as OpenTelemetry's exporter reads it.

    ``https://`` is TLS and ``http://`` plain text; without a scheme, TLS unless
    ``OTEL_EXPORTER_OTLP_INSECURE`` (or ``..._TRACES_``/``..._LOGS_INSECURE``) is true.

    Example:
        >>> grpc_target("http://127.0.0.1:4317")
        ('127.0.0.1:4317', False)
    """
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return parsed.netloc.rpartition("@")[2], parsed.scheme == "https"
    insecure = os.environ.get("OTEL_EXPORTER_OTLP_INSECURE", "").strip().lower() == "true"
    return url, not insecure


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
        delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
        return delay
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
