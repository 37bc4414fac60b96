"""Running the dashboard: in the foreground (``trodo-trace ui``) or in a thread (``trodo.ui()``)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

import uvicorn

from .app import create_app

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _warn_exposed(host: str) -> None:
    if not is_loopback(host):
        print(
            f"WARNING: the dashboard listens on {host}: anyone who can reach this address can read every "
            "run's inputs, outputs and errors, and add feedback. Use --host 127.0.0.1 to keep it local.",
            file=sys.stderr,
            flush=True,
        )


class ThreadServer:
    """A uvicorn server running in a daemon thread."""

    def __init__(self, store: Path, host: str, port: int):
        self.sock = _bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = _url(host, self.port)
        config = uvicorn.Config(
            create_app(store, allowed_hosts=_allowed_hosts(host, self.port)),
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="trodo-ui", daemon=True
        )

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError(f"the dashboard did not start on {self.url}")

    def alive(self) -> bool:
        return self.thread.is_alive() and not self.server.should_exit

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def _allowed_hosts(host: str, port: int) -> set[str]:
    """Host header values the app answers (a guard against DNS rebinding on loopback)."""
    if not is_loopback(host):
        return set()  # bound to a public address: any name may point at it
    names = {"127.0.0.1", "localhost", "[::1]", host}
    return {name for base in names for name in (base, f"{base}:{port}")}


def start_in_thread(store: Path, *, host: str = "127.0.0.1", port: int = 6007) -> ThreadServer:
    """Start the dashboard in a background thread; returns once it accepts connections."""
    _warn_exposed(host)
    server = ThreadServer(store, host, port)
    server.start()
    return server


def serve(store: Path, *, host: str = "127.0.0.1", port: int = 6007, open_browser: bool = False) -> int:
    """Serve the dashboard until interrupted (``trodo-trace ui``); the exit code."""
    _warn_exposed(host)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"trodo-trace: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    url = _url(host, port)
    app: Any = create_app(store, allowed_hosts=_allowed_hosts(host, port))
    print(f"trodo dashboard: {url} (store {store}; Ctrl+C to stop)", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
