"""Serve a test app on 127.0.0.1 with an ephemeral port: prints the port, serves until SIGTERM.

Usage: ``python -m apps.serve asgi|wsgi`` (with the tests directory on ``PYTHONPATH``).
"""

from __future__ import annotations

import signal
import socket
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _stop(signum: int, frame: object) -> None:
    sys.exit(0)  # unwinds serve_forever so atexit flushes the spans


def main(kind: str) -> None:
    if kind == "asgi":
        import uvicorn

        from apps.fastapi_app import app

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        print(sock.getsockname()[1], flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
    elif kind == "wsgi":
        from apps.flask_app import app

        server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
        signal.signal(signal.SIGTERM, _stop)
        print(server.server_port, flush=True)
        server.serve_forever()
    else:
        raise SystemExit(f"unknown app kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1])
