"""ASGI middleware: a request carrying trodo propagation headers joins the caller's run.

Pure ASGI (no Starlette import), so it wraps FastAPI, Starlette, Quart, Django's ASGI app and the like.

Example:
    >>> from fastapi import FastAPI
    >>> from trodo_trace.integrations.asgi import TrodoMiddleware
    >>> app = FastAPI()
    >>> app.add_middleware(TrodoMiddleware)     # or: trodo.fastapi_middleware(app)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._server import ServerRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WANTED = (b"x-trodo-run-id", b"traceparent", b"tracestate")

__all__ = ["TrodoMiddleware"]


class TrodoMiddleware:
    """Make each HTTP request that carries ``X-Trodo-Run-Id`` a ``chain`` span of the caller's run,
    under the caller's span (W3C ``traceparent``), named ``"GET /orders/{order_id}"`` (route template
    when the framework sets ``scope["route"]``, else the path). Traced code in the request nests under it.

    Requests with only ``traceparent`` continue the caller's trace in runs of their own; requests
    with neither pass through untouched. Malformed headers are ignored (debug log), never a client error.

    Example:
        >>> async def app(scope, receive, send):   # any ASGI application
        ...     ...
        >>> app = TrodoMiddleware(app)
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope.get("headers") or ():
            if name in _WANTED:
                headers[name.decode("latin-1")] = value.decode("latin-1")
        if not headers:
            await self.app(scope, receive, send)
            return
        request = ServerRequest.begin(headers.get, scope.get("method", "GET"), scope.get("path", "/"))
        if request is None:
            await self.app(scope, receive, send)
            return

        async def send_and_record(message: Message) -> None:
            if message.get("type") == "http.response.start":
                request.set_status(int(message.get("status", 200)))
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except BaseException as exc:
            request.fail(exc)
            raise
        finally:
            request.end(_route(scope))


def _route(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None
