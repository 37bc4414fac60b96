"""Outgoing HTTP calls made inside a run carry the propagation headers (httpx, requests).

``instrument_httpx()`` patches ``httpx.Client.send`` and ``httpx.AsyncClient.send``;
``instrument_requests()`` patches ``requests.Session.send``. Both are idempotent, never
overwrite a header the caller set, and add nothing outside a run. Only opaque ids travel
(run id, trace and span ids); user and conversation ids do not.

Example:
    >>> import trodo_trace as trodo
    >>> trodo.instrument_httpx()
    >>> trodo.instrument_requests()
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, MutableMapping
from typing import Any

from .._internal.core.errors import internal_error
from .._internal.propagation import propagation_headers

__all__ = ["instrument_httpx", "instrument_requests", "uninstrument_httpx", "uninstrument_requests"]

_MARK = "__trodo_original__"


def _require(module: str, caller: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{caller}() needs {module}: pip install {module}") from None


def _inject(headers: MutableMapping[str, str]) -> None:
    try:
        for name, value in propagation_headers().items():
            if name not in headers:  # httpx.Headers and requests' dict are case-insensitive
                headers[name] = value
    except Exception:
        internal_error("http header injection")


def _patch(cls: type, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = cls.__dict__["send"]
    if getattr(original, _MARK, None) is not None:
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, original)
    cls.send = wrapper  # type: ignore[attr-defined]


def _unpatch(cls: type) -> None:
    original = getattr(cls.__dict__.get("send"), _MARK, None)
    if original is not None:
        cls.send = original  # type: ignore[attr-defined]


def _sync_send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        _inject(request.headers)
        return original(self, request, *args, **kwargs)

    return send


def _async_send(original: Callable[..., Any]) -> Callable[..., Any]:
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        _inject(request.headers)
        return await original(self, request, *args, **kwargs)

    return send


def instrument_httpx() -> None:
    """Add ``X-Trodo-Run-Id`` and ``traceparent`` to every httpx request sent inside a run.

    Example:
        >>> import httpx
        >>> import trodo_trace as trodo
        >>> trodo.instrument_httpx()
        >>> @trodo.tool
        ... def fetch(url):
        ...     return httpx.get(url).json()   # the service's spans join this run

    Raises:
        ImportError: httpx is not installed.
    """
    httpx = _require("httpx", "instrument_httpx")
    _patch(httpx.Client, _sync_send)
    _patch(httpx.AsyncClient, _async_send)


def uninstrument_httpx() -> None:
    """Undo :func:`instrument_httpx` (nothing to undo when httpx is not installed)."""
    try:
        httpx = _require("httpx", "uninstrument_httpx")
    except ImportError:
        return
    _unpatch(httpx.Client)
    _unpatch(httpx.AsyncClient)


def instrument_requests() -> None:
    """Add ``X-Trodo-Run-Id`` and ``traceparent`` to every ``requests`` call sent inside a run.

    Example:
        >>> import requests
        >>> import trodo_trace as trodo
        >>> trodo.instrument_requests()
        >>> @trodo.tool
        ... def fetch(url):
        ...     return requests.get(url).json()

    Raises:
        ImportError: requests is not installed.
    """
    requests = _require("requests", "instrument_requests")
    _patch(requests.Session, _sync_send)


def uninstrument_requests() -> None:
    """Undo :func:`instrument_requests`."""
    requests = _require("requests", "uninstrument_requests")
    _unpatch(requests.Session)
