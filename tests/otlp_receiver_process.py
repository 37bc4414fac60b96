"""The OTLP receiver of :mod:`otlp_receiver` in a separate process, driven over a control HTTP API.

    with ReceiverProcess("http") as receiver:       # same methods as OtlpReceiver
        receiver.set_behaviour(delay=0.02)
        ...
        receiver.span_ids()                         # without decoding whole spans in the caller

Run as a script (``python tests/otlp_receiver_process.py --protocol http``) it serves and prints
``{"port": ..., "control": ...}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from otlp_receiver import Behaviour, OtlpReceiver, Received

from trodo_trace.testing import CapturedSpan


class ReceiverProcess:
    """:class:`OtlpReceiver` run by ``python tests/otlp_receiver_process.py`` in a child process."""

    def __init__(self, protocol: str = "http", *, port: int = 0):
        self.protocol = protocol
        self.port = port
        self.control_port = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> ReceiverProcess:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--protocol", self.protocol, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        ports = json.loads(self._process.stdout.readline())
        self.port, self.control_port = ports["port"], ports["control"]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = Request(
            f"http://127.0.0.1:{self.control_port}{path}", data=data, method="POST" if data else "GET"
        )
        with urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def set_behaviour(self, status: int = 200, **options: Any) -> None:
        self._call("/behaviour", asdict(Behaviour(status, **options)))

    def script(self, *behaviours: Behaviour) -> None:
        self._call("/script", [asdict(b) for b in behaviours])

    def spans(self) -> list[CapturedSpan]:
        return [CapturedSpan(**span) for span in self._call("/spans")]

    def span_ids(self) -> list[str]:
        """``span_id`` of every accepted span (duplicates included), without decoding whole spans here."""
        return self._call("/span_ids")

    def span_count(self) -> int:
        return self._call("/count")

    @property
    def requests(self) -> list[Received]:
        return [Received(**r) for r in self._call("/requests")]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.span_count() < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(protocol: str, port: int) -> None:
    receiver = OtlpReceiver(protocol, port=port)
    receiver.start()

    class Control(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, value: Any) -> None:
            payload = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == "/spans":
                self._reply([asdict(s) for s in receiver.spans()])
            elif self.path == "/span_ids":
                with receiver._lock:
                    bodies = [r.body for r in receiver.requests if r.accepted and r.path.endswith("traces")]
                ids = []
                for body in bodies:
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    ids.extend(
                        s.span_id.hex()
                        for r in request.resource_spans
                        for ss in r.scope_spans
                        for s in ss.spans
                    )
                self._reply(ids)
            elif self.path == "/count":
                self._reply(receiver.span_count())
            elif self.path == "/requests":
                with receiver._lock:
                    summary = [
                        {
                            "path": r.path,
                            "headers": r.headers,
                            "status": r.status,
                            "items": r.items,
                            "at": r.at,
                        }
                        for r in receiver.requests
                    ]
                self._reply(summary)
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if self.path == "/behaviour":
                receiver.set_behaviour(**payload)
            elif self.path == "/script":
                receiver.script(*(Behaviour(**b) for b in payload))
            self._reply(None)

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    control.daemon_threads = True
    print(json.dumps({"port": receiver.port, "control": control.server_address[1]}), flush=True)
    try:
        control.serve_forever()
    finally:
        receiver.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve an OTLP receiver on 127.0.0.1.")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _serve(arguments.protocol, arguments.port)
