"""A loopback sink for benchmarks: accepts what every measured SDK sends and counts what arrived.

One HTTP server on 127.0.0.1 (ephemeral port) that answers:

- OTLP/HTTP, protobuf or JSON, gzip/deflate/zstd bodies: ``<anything>/v1/traces`` (trodo_trace,
  OpenTelemetry, traceloop, Phoenix, MLflow, and Langfuse's ``/api/public/otel/v1/traces``),
  ``/v1/logs`` and ``/v1/metrics``;
- LangSmith: ``GET /info`` (declares zstd support when ``zstandard`` is importable here),
  ``POST /runs/multipart`` (plain or zstd), ``POST /runs/batch``, ``POST /runs``, ``PATCH /runs/<id>``;
  a run counts as delivered once a finished copy of it (with ``end_time``) arrived;
- Langfuse's other ``/api/public/*`` calls: ``/ingestion`` answers 207 with no errors, the rest ``{}``.

``delay_s`` slows every telemetry request (``set_delay`` changes it live and releases requests
already waiting), so a benchmark can model a slow or stalled backend.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

try:  # LangSmith compresses multipart runs with zstd when the server says it may
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

_PART_NAME = re.compile(rb'name="(post|patch)\.([0-9a-fA-F-]{36})"')
_RUN_PATH = re.compile(r"/runs/([0-9a-fA-F-]{36})$")


def _decode(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        if zstandard is None:
            raise ValueError("zstd body but zstandard is not installed")
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def count_otlp_spans(body: bytes, content_type: str) -> int:
    """Spans in one OTLP trace export request (protobuf or JSON)."""
    if "json" in content_type:
        data = json.loads(body or b"{}")
        return sum(
            len(scope.get("spans", []))
            for resource in data.get("resourceSpans", data.get("resource_spans", []))
            for scope in resource.get("scopeSpans", resource.get("scope_spans", []))
        )
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def count_otlp_logs(body: bytes, content_type: str) -> int:
    """Log records in one OTLP logs export request (protobuf or JSON)."""
    if "json" in content_type:
        data = json.loads(body or b"{}")
        return sum(
            len(scope.get("logRecords", []))
            for resource in data.get("resourceLogs", [])
            for scope in resource.get("scopeLogs", [])
        )
    request = ExportLogsServiceRequest.FromString(body)
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


def langsmith_multipart_runs(body: bytes, content_type: str) -> list[tuple[str, str, bool]]:
    """``(operation, run_id, finished)`` for each run part of a LangSmith multipart body."""
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    if match is None:
        return []
    runs = []
    for part in body.split(b"--" + match.group(1).encode()):
        head, _, content = part.partition(b"\r\n\r\n")
        name = _PART_NAME.search(head)
        if name is None:
            continue
        try:
            finished = bool(json.loads(content.rstrip(b"\r\n") or b"{}").get("end_time"))
        except ValueError:
            finished = False
        runs.append((name.group(1).decode(), name.group(2).decode(), finished))
    return runs


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a measured process leaves with os._exit() at its deadline, maybe mid-request: not an error
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class OTLPSink:
    """``with OTLPSink(delay_s=0.005) as sink: ... sink.url ... sink.span_count``."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.span_count = 0  # OTLP spans + finished LangSmith runs
        self.log_count = 0
        self.requests = 0
        self.errors = 0
        self.paths: dict[str, int] = {}
        self._runs_started: set[str] = set()
        self._runs_finished: set[str] = set()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._closed = False
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control --------------------------------------------------------------------------------
    def __enter__(self) -> OTLPSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def set_delay(self, delay_s: float) -> None:
        """Change the per-request delay; lowering it releases requests already waiting."""
        self.delay_s = delay_s
        if delay_s <= 0:
            self._release.set()
        else:
            self._release.clear()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.span_count = self.log_count = self.requests = self.errors = 0
            self.paths = {}
            self._runs_started.clear()
            self._runs_finished.clear()

    def take(self) -> int:
        """The spans counted since the last ``take``/``reset``, and start counting again."""
        with self._lock:
            spans = self.span_count
        self.reset()
        return spans

    def wait_for(self, spans: int, timeout: float) -> bool:
        """Wait until ``spans`` arrived or ``timeout`` passed; ``True`` if they all arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.span_count >= spans:
                return True
            time.sleep(0.05)
        return self.span_count >= spans

    def settle(self, quiet_s: float = 0.5, timeout: float = 10.0) -> int:
        """Wait until nothing new arrived for ``quiet_s`` (at most ``timeout``); the span count."""
        deadline = time.monotonic() + timeout
        last, since = self.span_count, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.span_count != last:
                last, since = self.span_count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return self.span_count

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "spans": self.span_count,
                "logs": self.log_count,
                "requests": self.requests,
                "errors": self.errors,
                "paths": dict(self.paths),
            }

    # -- accounting -----------------------------------------------------------------------------
    def _wait(self) -> None:
        delay = self.delay_s
        if delay > 0 and not self._closed:
            self._release.wait(delay)

    def _runs(self, runs: list[tuple[str, str, bool]]) -> None:
        with self._lock:
            before = len(self._runs_finished)
            for operation, run_id, finished in runs:
                self._runs_started.add(run_id)
                if finished or operation == "patch":
                    self._runs_finished.add(run_id)
            self.span_count += len(self._runs_finished) - before

    def _record(self, path: str, spans: int = 0, logs: int = 0) -> None:
        key = re.sub(r"[0-9a-fA-F-]{36}", "<id>", path)
        with self._lock:
            self.span_count += spans
            self.log_count += logs
            self.requests += 1
            self.paths[key] = self.paths.get(key, 0) + 1

    def _handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes]:
        """Count one request; ``(status, content type, payload)`` to answer with."""
        path = path.split("?", 1)[0].rstrip("/")
        content_type = headers.get("Content-Type") or ""
        if path == "/__bench__/delay":  # benchmark control: stall or release the sink
            self.set_delay(float(body or b"0"))
            return 200, "text/plain", b"ok"
        if method == "GET":
            self._record(path)
            if path.endswith("/info"):
                info = {"version": "0.10.0", "instance_flags": {"zstd_compression_enabled": bool(zstandard)}}
                return 200, "application/json", json.dumps(info).encode()
            if path.endswith("/api/public/projects"):
                projects = {"data": [{"id": "bench", "name": "bench", "metadata": {}}]}
                return 200, "application/json", json.dumps(projects).encode()
            return 200, "application/json", b"{}"
        encoding = headers.get("Content-Encoding")
        body = _decode(body, encoding)
        where = f"{path} ({encoding})" if encoding else path
        self._wait()
        if path.endswith("/v1/traces"):
            self._record(where, spans=count_otlp_spans(body, content_type))
            if "json" in content_type:
                return 200, "application/json", b"{}"
            return 200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString()
        if path.endswith("/v1/logs"):
            self._record(where, logs=count_otlp_logs(body, content_type))
            return 200, "application/x-protobuf", b""
        if path.endswith("/v1/metrics"):
            self._record(where)
            return 200, "application/x-protobuf", b""
        if path.endswith("/runs/multipart"):
            self._runs(langsmith_multipart_runs(body, content_type))
            self._record(where)
            return 202, "application/json", b"{}"
        if path.endswith("/runs/batch"):
            data = json.loads(body or b"{}")
            runs = [("post", r["id"], bool(r.get("end_time"))) for r in data.get("post") or []]
            runs += [("patch", r["id"], True) for r in data.get("patch") or []]
            self._runs(runs)
            self._record(where)
            return 202, "application/json", b"{}"
        run_path = _RUN_PATH.search(path)
        if path.endswith("/runs") or (run_path and method == "PATCH"):
            data = json.loads(body or b"{}")
            run_id = run_path.group(1) if run_path else data.get("id", "")
            self._runs(
                [("patch" if run_path else "post", run_id, bool(data.get("end_time")) or bool(run_path))]
            )
            self._record(where)
            return 202, "application/json", b"{}"
        self._record(where)
        if path.endswith("/api/public/ingestion"):
            return 207, "application/json", b'{"successes": [], "errors": []}'
        return 200, "application/json", b"{}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self, method: str) -> None:
                body = self._body()
                try:
                    status, content_type, payload = sink._handle(method, self.path, self.headers, body)
                except Exception as exc:
                    with sink._lock:
                        sink.errors += 1
                    status, content_type, payload = 400, "text/plain", str(exc).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler
