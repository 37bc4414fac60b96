"""Integrations: ASGI/WSGI middleware and HTTP header injection (each imports its library lazily).

- ``trodo_trace.integrations.asgi.TrodoMiddleware`` — FastAPI, Starlette and any ASGI app
- ``trodo_trace.integrations.wsgi.TrodoMiddleware`` — Flask, Django and any WSGI app
- ``trodo_trace.integrations.http`` — ``instrument_httpx`` / ``instrument_requests``
"""

from __future__ import annotations

from typing import Any, TypeVar

from .http import instrument_httpx, instrument_requests

A = TypeVar("A")

__all__ = ["fastapi_middleware", "instrument_httpx", "instrument_requests"]


def fastapi_middleware(app: A) -> A:
    """Add :class:`~trodo_trace.integrations.asgi.TrodoMiddleware` to a FastAPI (or Starlette) app,
    once, and return the app: requests from a traced caller join the caller's run.

    Example:
        >>> from fastapi import FastAPI
        >>> import trodo_trace as trodo
        >>> app = trodo.fastapi_middleware(FastAPI())

    Raises:
        TypeError: ``app`` has no ``add_middleware`` (wrap other ASGI apps with ``TrodoMiddleware(app)``).
    """
    from .asgi import TrodoMiddleware

    add = getattr(app, "add_middleware", None)
    if not callable(add):
        raise TypeError(
            "app must be a FastAPI or Starlette application; wrap other ASGI apps with "
            "trodo_trace.integrations.asgi.TrodoMiddleware(app)"
        )
    existing: Any = getattr(app, "user_middleware", ())
    if not any(getattr(item, "cls", None) is TrodoMiddleware for item in existing):
        add(TrodoMiddleware)
    return app
