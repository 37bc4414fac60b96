"""What the ASGI and WSGI middleware do for one incoming request."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.trace import NonRecordingSpan
from opentelemetry.trace.status import StatusCode

from .._internal import runtime as runtime_mod
from .._internal.core import spans
from .._internal.core.decorators import record_error
from .._internal.core.errors import internal_error
from .._internal.core.tracing import start_span
from .._internal.propagation import join_context, read_headers, token_for


class ServerRequest:
    """One incoming request: joins the caller's run for its duration.

    With a valid ``X-Trodo-Run-Id`` the request becomes a ``chain`` span (``"GET /path"``) of the
    caller's run, under the caller's span when ``traceparent`` is valid too. With only a valid
    ``traceparent`` the remote trace context is attached without a span: a run started by traced
    code in the request continues the caller's trace. Without either it returns ``None`` and the
    request is traced as if there were no middleware.
    """

    __slots__ = ("ctx", "span", "token")

    def __init__(self, ctx: otel_context.Context, span: spans.TrodoSpan | None):
        self.ctx = ctx
        self.span = span
        self.token: object | None = None

    @classmethod
    def begin(cls, get_header: Callable[[str], str | None], method: str, path: str) -> ServerRequest | None:
        """Join the run named by the request headers (``get_header`` takes lowercase names)."""
        try:
            runtime = spans.RUNTIME or runtime_mod.get()
            if not runtime.enabled:
                return None
            run_id, span_context = read_headers(get_header)
            if run_id is None and span_context is None:
                return None
            base = otel_context.get_current()
            if run_id is None:
                assert span_context is not None
                request = cls(trace_api.set_span_in_context(NonRecordingSpan(span_context), base), None)
            else:
                ctx, _run = join_context(token_for(run_id, span_context, None, None), base)
                attributes = {"http.request.method": method, "url.path": path}
                span = start_span(f"{method} {path}", "chain", attributes, ctx=ctx)
                request = cls(trace_api.set_span_in_context(span, ctx), span)
            request.token = otel_context.attach(request.ctx)
            return request
        except Exception:
            internal_error("request join")
            return None

    def set_status(self, status_code: int) -> None:
        """Record the response status (5xx marks the span failed)."""
        span = self.span
        if span is None:
            return
        span.set_attribute("http.response.status_code", status_code)
        if status_code >= 500 and span.status_code is not StatusCode.ERROR:
            span.set_attribute("error.type", str(status_code))
            span.set_status(StatusCode.ERROR, f"HTTP {status_code}")

    def fail(self, exc: BaseException) -> None:
        """Record an exception that escaped the application."""
        if self.span is not None:
            record_error(self.span, exc)

    def detach(self) -> None:
        """Leave the request's context (the span stays open until :meth:`end`)."""
        token, self.token = self.token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def end(self, route: str | None = None) -> None:
        """Leave the context and end the span, named by the route template when known."""
        self.detach()
        span = self.span
        if span is None:
            return
        try:
            if route:
                span.set_attribute("http.route", route)
                method = span.attributes.get("http.request.method", "")
                span.update_name(f"{method} {route}")
        except Exception:
            internal_error("request end")
        span.end()
