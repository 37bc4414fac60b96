"""A Flask (WSGI) service whose requests join the caller's run (served by wsgiref in the tests)."""

from __future__ import annotations

from flask import Flask, Response, request, stream_with_context

import trodo_trace as trodo
from trodo_trace.integrations.wsgi import TrodoMiddleware

app = Flask(__name__)
app.wsgi_app = TrodoMiddleware(app.wsgi_app)  # type: ignore[method-assign]


@trodo.tool
def lookup_order(order_id: str) -> dict:
    span = trodo.current_span()
    return {"id": order_id, "status": "shipped", "run_id": span.run_id if span else None}


@trodo.chain
def render_line(n: int) -> str:
    return f"line {n}\n"


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict:
    return {"order": lookup_order(order_id)}


@app.get("/stream")
def stream() -> Response:
    def lines():
        for n in range(2):
            yield render_line(n)

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/fail")
def fail() -> dict:
    raise RuntimeError("inventory database unreachable")


@app.get("/headers")
def headers() -> dict:
    return {
        name.lower(): value
        for name, value in request.headers.items()
        if name.lower() in ("x-trodo-run-id", "traceparent")
    }
