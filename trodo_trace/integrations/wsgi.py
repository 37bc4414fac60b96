"""WSGI middleware: a request carrying trodo propagation headers joins the caller's run.

Example (Flask; for Django wrap ``get_wsgi_application()`` the same way):
    >>> from flask import Flask
    >>> from trodo_trace.integrations.wsgi import TrodoMiddleware
    >>> app = Flask("orders")
    >>> app.wsgi_app = TrodoMiddleware(app.wsgi_app)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry import context as otel_context

from ._server import ServerRequest

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_ENVIRON_KEYS = {
    "x-trodo-run-id": "HTTP_X_TRODO_RUN_ID",
    "traceparent": "HTTP_TRACEPARENT",
    "tracestate": "HTTP_TRACESTATE",
}

__all__ = ["TrodoMiddleware"]


class TrodoMiddleware:
    """Make each request that carries ``X-Trodo-Run-Id`` a ``chain`` span (``"GET /path"``) of the
    caller's run, under the caller's span (W3C ``traceparent``). The span stays open while the
    response body is produced and ends when the server closes it.

    Requests with only ``traceparent`` continue the caller's trace in runs of their own; requests
    with neither pass through untouched. Malformed headers are ignored (debug log), never a client error.

    Example:
        >>> def application(environ, start_response):   # any WSGI application
        ...     start_response("200 OK", [("Content-Type", "text/plain")])
        ...     return [b"ok"]
        >>> application = TrodoMiddleware(application)
    """

    def __init__(self, app: WSGIApp):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not any(key in environ for key in _ENVIRON_KEYS.values()):
            return self.app(environ, start_response)
        request = ServerRequest.begin(
            lambda name: environ.get(_ENVIRON_KEYS[name]),
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO") or "/",
        )
        if request is None:
            return self.app(environ, start_response)

        def start_and_record(status: str, headers: Any, exc_info: Any = None) -> Any:
            code = status.split(" ", 1)[0]
            if code.isdigit():
                request.set_status(int(code))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            result = self.app(environ, start_and_record)
        except BaseException as exc:
            request.fail(exc)
            request.end()
            raise
        request.detach()
        return _Body(result, request)


class _Body:
    """The response iterable: the request's context is attached while each chunk is produced."""

    __slots__ = ("_iterator", "_request", "_result")

    def __init__(self, result: Iterable[bytes], request: ServerRequest):
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._result)
        token = otel_context.attach(self._request.ctx)
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            self._request.fail(exc)
            raise
        finally:
            otel_context.detach(token)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._request.end()
