"""A real OTLP receiver on 127.0.0.1 for tests and benchmarks: HTTP or gRPC, in a thread or a process.

It decodes what arrives (``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``) and can be
told how to answer: a status, a ``Retry-After``, a delay, a partial success, or a blackhole (accept
the connection, never answer).

    receiver = OtlpReceiver("http").start()        # or "grpc"; ReceiverProcess(...) for another process
    trodo.init(endpoint=receiver.url)
    ...
    receiver.wait_for_spans(3)
    receiver.spans()                               # trodo_trace.testing.CapturedSpan list
    Capture().tree(keys, spans=receiver.spans())   # compare whole trees
    receiver.set_behaviour(status=503, retry_after="1")   # every later request
    receiver.script(Behaviour(status=429), Behaviour())   # the next requests, one each
    receiver.requests                              # Received(path, headers, status, spans, ...)
    receiver.stop()

Statuses are HTTP codes; over gRPC they map to the codes OTLP uses (429 -> RESOURCE_EXHAUSTED with a
RetryInfo, 502/503 -> UNAVAILABLE, 504 -> DEADLINE_EXCEEDED, 400 -> INVALID_ARGUMENT, ...).
``otlp_receiver_process.ReceiverProcess`` runs the same receiver in its own process and drives it
over a small control HTTP API with the same methods.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trodo_trace.testing import CapturedSpan

_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass
class Behaviour:
    """How to answer one request."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    blackhole: bool = False
    partial_rejected: int = 0
    message: str = ""


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    status: int
    items: int
    at: float
    body: bytes = field(repr=False, default=b"")

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def any_value(value: AnyValue) -> Any:
    """A Python value for an OTLP ``AnyValue`` (arrays as lists, key-value lists as dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    result = {}
    for kv in pairs:
        item = any_value(kv.value)
        result[kv.key] = tuple(item) if isinstance(item, list) else item
    return result


def decode_spans(body: bytes) -> list[CapturedSpan]:
    """The spans of a serialised ``ExportTraceServiceRequest`` as ``CapturedSpan`` objects."""
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = _attributes(span.attributes)
                spans.append(
                    CapturedSpan(
                        name=span.name,
                        kind=str(attributes.get("trodo.span.kind", "function")),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        run_id=attributes.get("trodo.run.id"),
                        status=_STATUS_NAMES[span.status.code],
                        status_message=span.status.message or None,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes,
                        events=[
                            {
                                "name": e.name,
                                "timestamp": e.time_unix_nano,
                                "attributes": _attributes(e.attributes),
                            }
                            for e in span.events
                        ],
                    )
                )
    return spans


def decode_resources(body: bytes) -> list[dict[str, Any]]:
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    return [_attributes(rs.resource.attributes) for rs in request.resource_spans]


def decode_logs(body: bytes) -> list[dict[str, Any]]:
    """The log records of a serialised ``ExportLogsServiceRequest`` as dicts."""
    request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
    records = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = _attributes(record.attributes)
                records.append(
                    {
                        "body": any_value(record.body),
                        "attributes": attributes,
                        # The LogRecord.event_name field is newer than opentelemetry-proto 1.27;
                        # there the event name travels as the event.name attribute only.
                        "event_name": getattr(record, "event_name", None) or attributes.get("event.name"),
                        "trace_id": record.trace_id.hex(),
                        "span_id": record.span_id.hex(),
                        "time_unix_nano": record.time_unix_nano,
                    }
                )
    return records


def _count(path: str, body: bytes) -> int:
    if path.endswith("logs"):
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


class OtlpReceiver:
    """An OTLP receiver in this process (see the module docstring)."""

    def __init__(
        self,
        protocol: str = "http",
        *,
        port: int = 0,
        keep_bodies: bool = True,
        tls: tuple[str, str, str | None] | None = None,
    ):
        if protocol not in ("http", "grpc"):
            raise ValueError("protocol must be 'http' or 'grpc'")
        self.protocol = protocol
        self.keep_bodies = keep_bodies
        self.tls = tls  # (certificate, key, CA that client certificates must chain to, or None)
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._default = Behaviour()
        self._by_signal: dict[str, Behaviour] = {}
        self._script: list[Behaviour] = []
        self._released = threading.Event()
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------
    def start(self) -> OtlpReceiver:
        if self.protocol == "http":
            self._start_http()
        else:
            self._start_grpc()
        return self

    @property
    def url(self) -> str:
        """The base endpoint (``http://127.0.0.1:PORT``, ``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def set_behaviour(self, status: int = 200, **options: Any) -> None:
        """Answer every later request this way (``retry_after``, ``delay``, ``blackhole``,
        ``partial_rejected``, ``message``)."""
        with self._lock:
            self._default = Behaviour(status, **options)

    def refuse_signal(self, signal: str, status: int) -> None:
        """Answer every request for ``signal`` (``"logs"``, ``"traces"``) with ``status``, as a backend
        without that signal does (Phoenix answers 405 on ``/v1/logs``); HTTP only."""
        with self._lock:
            self._by_signal[signal] = Behaviour(status, message=f"no {signal} here")

    def script(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, one each, then go back to the default."""
        with self._lock:
            self._script.extend(behaviours)

    def stop(self) -> None:
        self._released.set()
        if self._server is None:
            return
        if self.protocol == "http":
            self._server.shutdown()
            self._server.server_close()
        else:
            self._server.stop(grace=None).wait(5)
        self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ----------------------------------------------------------------------------
    def spans(self) -> list[CapturedSpan]:
        """Every span of every accepted trace request, in arrival order."""
        with self._lock:
            bodies = [r.body for r in self.requests if r.accepted and r.path.endswith("traces")]
        return [span for body in bodies for span in decode_spans(body)]

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [r.body for r in self.requests if r.accepted and r.path.endswith("logs")]
        return [record for body in bodies for record in decode_logs(body)]

    def resources(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [r.body for r in self.requests if r.accepted and r.path.endswith("traces")]
        return [resource for body in bodies for resource in decode_resources(body)]

    def span_count(self) -> int:
        """Spans in accepted requests (duplicates included)."""
        with self._lock:
            return sum(r.items for r in self.requests if r.accepted and r.path.endswith("traces"))

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` spans were accepted."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while sum(r.items for r in self.requests if r.accepted and r.path.endswith("traces")) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
        return True

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
        return True

    # -- the servers -----------------------------------------------------------------------------
    def _next(self, path: str = "") -> Behaviour:
        with self._lock:
            for signal, behaviour in self._by_signal.items():
                if path.endswith(signal):
                    return behaviour
            return self._script.pop(0) if self._script else self._default

    def _record(self, path: str, headers: dict[str, str], body: bytes, status: int) -> None:
        try:
            items = _count(path, body)
        except Exception:
            items = 0
        with self._arrived:
            self.requests.append(
                Received(path, headers, status, items, time.time(), body if self.keep_bodies else b"")
            )
            self._arrived.notify_all()

    def _start_http(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                behaviour = receiver._next(self.path)
                if behaviour.blackhole:
                    receiver._released.wait()
                    self.close_connection = True
                    return
                if behaviour.delay:
                    receiver._released.wait(behaviour.delay)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                body = (
                    gzip.decompress(raw)
                    if encoding == "gzip"
                    else zlib.decompress(raw)
                    if encoding == "deflate"
                    else raw
                )
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(self.path, headers, body, behaviour.status)
                self._answer(behaviour)

            def _answer(self, behaviour: Behaviour) -> None:
                if 200 <= behaviour.status < 300:
                    response = (
                        logs_service_pb2.ExportLogsServiceResponse()
                        if self.path.endswith("logs")
                        else trace_service_pb2.ExportTraceServiceResponse()
                    )
                    if behaviour.partial_rejected:
                        partial = response.partial_success
                        field_name = (
                            "rejected_log_records" if self.path.endswith("logs") else "rejected_spans"
                        )
                        setattr(partial, field_name, behaviour.partial_rejected)
                        partial.error_message = behaviour.message or "some items were rejected"
                    payload = response.SerializeToString()
                else:
                    from google.rpc.status_pb2 import Status

                    payload = Status(
                        code=behaviour.status, message=behaviour.message or "refused"
                    ).SerializeToString()
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                if behaviour.retry_after is not None:
                    self.send_header("Retry-After", behaviour.retry_after)
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # failed TLS handshakes and dropped connections are part of the tests

        server = Server(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            import ssl

            certificate, key, client_ca = self.tls
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certificate, key)
            if client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver", daemon=True
        )
        self._thread.start()

    def _start_grpc(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self
        codes = {
            400: grpc.StatusCode.INVALID_ARGUMENT,
            401: grpc.StatusCode.UNAUTHENTICATED,
            403: grpc.StatusCode.PERMISSION_DENIED,
            404: grpc.StatusCode.UNIMPLEMENTED,
            429: grpc.StatusCode.RESOURCE_EXHAUSTED,
            500: grpc.StatusCode.INTERNAL,
            502: grpc.StatusCode.UNAVAILABLE,
            503: grpc.StatusCode.UNAVAILABLE,
            504: grpc.StatusCode.DEADLINE_EXCEEDED,
        }

        def handle(path: str, request: Any, context: Any, response: Any) -> Any:
            behaviour = receiver._next()
            if behaviour.blackhole:
                receiver._released.wait()
                context.abort(grpc.StatusCode.UNAVAILABLE, "receiver stopped")
            if behaviour.delay:
                receiver._released.wait(behaviour.delay)
            headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            receiver._record(path, headers, request.SerializeToString(), behaviour.status)
            if not 200 <= behaviour.status < 300:
                if behaviour.retry_after is not None:
                    from google.protobuf.duration_pb2 import Duration
                    from google.rpc.error_details_pb2 import RetryInfo

                    delay = float(behaviour.retry_after)
                    info = RetryInfo(retry_delay=Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9)))
                    context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
                context.abort(
                    codes.get(behaviour.status, grpc.StatusCode.INTERNAL), behaviour.message or "refused"
                )
            if behaviour.partial_rejected:
                field_name = "rejected_log_records" if path.endswith("logs") else "rejected_spans"
                setattr(response.partial_success, field_name, behaviour.partial_rejected)
                response.partial_success.error_message = behaviour.message or "some items were rejected"
            return response

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return handle("/v1/traces", request, context, trace_service_pb2.ExportTraceServiceResponse())

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return handle("/v1/logs", request, context, logs_service_pb2.ExportLogsServiceResponse())

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server


def make_certificates(directory: Path) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (needs ``openssl``)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    # RFC 5280 extensions throughout: Python 3.13 verifies with VERIFY_X509_STRICT by default.
    ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]
    openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca", *ca_ext
    )  # fmt: skip
    leaf = (
        "basicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
    )
    (directory / "server.ext").write_text(leaf + "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text(leaf + "extendedKeyUsage=clientAuth\n")
    for name, extra in (("server", ["-extfile", "server.ext"]), ("client", ["-extfile", "client.ext"])):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *extra,
        )
    return {
        name: str(directory / name)
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a collector that is down)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_script(
    code: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    name: str = "app.py",
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a Python script in a fresh interpreter (the test's environment plus ``env``)."""
    import os
    import textwrap

    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
