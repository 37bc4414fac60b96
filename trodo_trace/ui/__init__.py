"""The local dashboard: ``trodo-trace ui`` and ``trodo.ui()`` serve the local store as web pages.

The web stack (Starlette, uvicorn, Jinja2: ``pip install 'trodo-trace[ui]'``) is imported only when
a dashboard starts, so importing ``trodo_trace`` stays light.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_servers: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def ui(port: int = 6007, *, store: str | os.PathLike[str] | None = None, host: str = "127.0.0.1") -> str:
    """Start the local dashboard in a background thread and return its URL.

    The dashboard reads the local store (``store``, or this process's store: ``init(store_path=...)``,
    ``$TRODO_STORE``, ``./.trodo/trodo.db``). Calling it again with the same port returns the running
    one's URL. In a notebook the URL is also shown as a link. ``port=0`` picks a free port.

    Args:
        port: The TCP port, 6007 by default.
        store: The store file to show.
        host: The address to bind; loopback by default (anything else exposes the store's content).

    Raises:
        ValueError: there is no store file yet.
        ModuleNotFoundError: the ``ui`` extra is not installed.

    Example:
        >>> import trodo_trace as trodo
        >>> callable(trodo.ui)  # trodo.ui() starts the dashboard and returns "http://127.0.0.1:6007/"
        True
    """
    from pathlib import Path

    from .server import start_in_thread

    if store is None:
        from .._internal import runtime as runtime_mod

        current = runtime_mod.current()
        path = getattr(current, "store_path", None) if current is not None else None
        if path is None:
            from .._internal.config import default_store_path

            path = default_store_path()
        store = path
    store_path = Path(store).expanduser()
    if not store_path.is_file():
        raise ValueError(f"no local store at {store_path} (run something traced first)")
    with _lock:
        server = _servers.get((host, port)) if port else None
        if server is None or not server.alive():
            server = start_in_thread(store_path, host=host, port=port)
            _servers[(host, server.port)] = server
    _show_link(server.url)
    return str(server.url)


def _show_link(url: str) -> None:
    """In IPython/Jupyter, display the URL as a link (nothing elsewhere)."""
    from .._internal.runtime import in_ipython

    if not in_ipython():
        return
    try:
        import html
        import importlib

        # Any-typed: IPython's type information differs between its releases
        shown: Any = importlib.import_module("IPython.display")
        safe = html.escape(url, quote=True)
        shown.display(
            shown.HTML(f'<a href="{safe}" target="_blank" rel="noopener">trodo dashboard: {safe}</a>')
        )
    except Exception:  # display is a convenience; the URL is returned anyway
        return


__all__ = ["ui"]
