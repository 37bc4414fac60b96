"""A loopback OTLP/HTTP sink for benchmarks: accepts every export, counts spans, optionally slow."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OTLPSink:
    """``with OTLPSink(delay_s=0.005) as sink: ... sink.url ... sink.span_count``."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.span_count = 0
        self.log_count = 0
        self.requests = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                spans = logs = 0
                if self.path.endswith("/v1/logs"):
                    request = ExportLogsServiceRequest.FromString(body)
                    logs = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
                else:
                    request = ExportTraceServiceRequest.FromString(body)
                    spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with sink._lock:
                    sink.span_count += spans
                    sink.log_count += logs
                    sink.requests += 1
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, spans: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.span_count >= spans:
                return True
            time.sleep(0.05)
        return False
