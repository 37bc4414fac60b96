"""Services in-process: the ASGI/WSGI middleware join the caller's run; httpx/requests carry the headers."""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx
import pytest
import requests
from apps.fastapi_app import app as fastapi_app
from apps.flask_app import app as flask_app
from fastapi import FastAPI

import trodo_trace as trodo
from trodo_trace.integrations.asgi import TrodoMiddleware
from trodo_trace.integrations.http import uninstrument_httpx, uninstrument_requests
from trodo_trace.testing import capture

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
KEYS = ("http.route", "http.response.status_code", "error.type", "trodo.run.joined")


@pytest.fixture(autouse=True)
def _instrumented():
    """Each test sends through instrumented clients and leaves them as it found them."""
    trodo.instrument_httpx()
    trodo.instrument_requests()
    yield
    uninstrument_httpx()
    uninstrument_requests()


def node(name, kind, children=(), status="OK", **attributes):
    return {
        "name": name,
        "kind": kind,
        "status": status,
        "attributes": attributes,
        "children": list(children),
    }


JOINED = {"trodo.run.joined": True}


async def test_fastapi_request_becomes_a_span_of_the_callers_run():
    """An agent's httpx call to a FastAPI app: the request is a chain span under the calling tool,
    the endpoint's tool and LLM spans under it, all in the caller's run and trace."""
    transport = httpx.ASGITransport(app=fastapi_app)

    @trodo.tool(capture_input=False)
    async def fetch(client: httpx.AsyncClient, order_id: str) -> dict:
        return (await client.get(f"/orders/{order_id}")).json()

    @trodo.agent("checkout")
    async def checkout() -> dict:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            return await fetch(client, "7")

    with capture() as traces:
        body = await checkout()
    run_id = trodo.last_run().run_id
    assert body["order"]["run_id"] == run_id
    request = {"http.route": "/orders/{order_id}", "http.response.status_code": 200, **JOINED}
    assert traces.tree(keys=KEYS) == [
        node(
            "checkout",
            "run",
            [
                node(
                    "fetch",
                    "tool",
                    [
                        node(
                            "GET /orders/{order_id}",
                            "chain",
                            [node("lookup_order", "tool", **JOINED), node("summarize", "llm", **JOINED)],
                            **request,
                        )
                    ],
                )
            ],
        )
    ]
    assert {(span.run_id, span.trace_id) for span in traces.spans} == {(run_id, traces.runs()[0].trace_id)}
    request_span = traces.by_name("GET /orders/{order_id}")
    assert request_span.parent_id == traces.by_name("fetch").span_id
    assert request_span.attributes["url.path"] == "/orders/7"
    assert request_span.attributes["http.request.method"] == "GET"


async def test_fastapi_error_marks_the_request_span_failed():
    """An exception escaping the endpoint fails the request span (error.type, exception event); the client gets 500."""
    transport = httpx.ASGITransport(app=fastapi_app, raise_app_exceptions=False)

    @trodo.agent("checkout")
    async def checkout() -> int:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            return (await client.get("/fail")).status_code

    with capture() as traces:
        assert await checkout() == 500
    assert traces.tree(keys=KEYS) == [
        node(
            "checkout",
            "run",
            [
                node(
                    "GET /fail",
                    "chain",
                    [node("lookup_order", "tool", **JOINED)],
                    status="ERROR",
                    **{"http.route": "/fail", "error.type": "RuntimeError", **JOINED},
                )
            ],
        )
    ]
    failed = traces.by_name("GET /fail")
    assert failed.status_message == "RuntimeError: inventory database unreachable"
    assert [event["name"] for event in failed.events] == ["exception"]


async def test_asgi_5xx_response_without_exception_is_an_error():
    """A 503 the app returns itself marks the request span ERROR with error.type "503"; a 404 does not."""

    async def plain_app(scope, receive, send):
        status = 503 if scope["path"] == "/busy" else 404
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=TrodoMiddleware(plain_app))

    @trodo.agent("caller")
    async def caller() -> list[int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return [(await client.get(path)).status_code for path in ("/busy", "/missing")]

    with capture() as traces:
        assert await caller() == [503, 404]
    assert traces.tree(keys=KEYS) == [
        node(
            "caller",
            "run",
            [
                node(
                    "GET /busy",
                    "chain",
                    status="ERROR",
                    **{"http.response.status_code": 503, "error.type": "503", **JOINED},
                ),
                node("GET /missing", "chain", **{"http.response.status_code": 404, **JOINED}),
            ],
        )
    ]


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Trodo-Run-Id": "bad id with spaces", "traceparent": "00-nothex-nothex-01"}],
    ids=["missing", "malformed"],
)
async def test_request_without_usable_headers_is_traced_normally(headers, caplog):
    """Without (or with malformed) headers there is no request span: the endpoint's traced code
    starts runs of its own; malformed values are logged at debug, the client gets 200."""
    transport = httpx.ASGITransport(app=fastapi_app)
    with caplog.at_level(logging.DEBUG, logger="trodo_trace"), capture() as traces:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            response = await client.get("/orders/9", headers=headers)
    assert response.status_code == 200
    assert traces.tree(keys=KEYS) == [node("lookup_order", "tool"), node("summarize", "llm")]
    assert all(span.parent_id is None and span.is_run_root for span in traces.spans)
    assert response.json()["order"]["run_id"] == traces.by_name("lookup_order").run_id
    malformed = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == (2 if headers else 0)


async def test_traceparent_alone_continues_the_trace_in_a_new_run():
    """A request with only W3C traceparent (a plain OpenTelemetry caller) gets runs that continue its trace."""
    transport = httpx.ASGITransport(app=fastapi_app)
    with capture() as traces:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            await client.get("/orders/9", headers={"traceparent": TRACEPARENT})
    assert traces.tree() == [
        {"name": "lookup_order", "kind": "tool", "status": "OK", "children": []},
        {"name": "summarize", "kind": "llm", "status": "OK", "children": []},
    ]
    assert {(s.trace_id, s.parent_id, s.is_run_root) for s in traces.spans} == {(TRACE_ID, PARENT_ID, True)}


def test_flask_request_joins_and_streams_inside_the_request_span():
    """Through the WSGI middleware (Flask), the request span stays open while a streamed body is
    produced; spans made while streaming nest under it."""
    client = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://orders")

    @trodo.agent("reader")
    def reader() -> tuple[dict, str]:
        with client:
            return client.get("/orders/3").json(), client.get("/stream").text

    with capture() as traces:
        order, text = reader()
    assert text == "line 0\nline 1\n"
    assert order["order"]["run_id"] == trodo.last_run().run_id
    assert traces.tree(keys=KEYS) == [
        node(
            "reader",
            "run",
            [
                node(
                    "GET /orders/3",
                    "chain",
                    [node("lookup_order", "tool", **JOINED)],
                    **{"http.response.status_code": 200, **JOINED},
                ),
                node(
                    "GET /stream",
                    "chain",
                    [node("render_line", "chain", **JOINED), node("render_line", "chain", **JOINED)],
                    **{"http.response.status_code": 200, **JOINED},
                ),
            ],
        )
    ]


def test_flask_error_and_missing_headers():
    """A Flask 500 fails the request span; the same app without headers records no request span."""
    client = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://orders")

    @trodo.agent("caller")
    def caller() -> int:
        return client.get("/fail").status_code

    with capture() as traces:
        assert caller() == 500
        uninstrument_httpx()
        assert client.get("/orders/1").status_code == 200
    assert traces.tree(keys=KEYS) == [
        node(
            "caller",
            "run",
            [
                node(
                    "GET /fail",
                    "chain",
                    status="ERROR",
                    **{"http.response.status_code": 500, "error.type": "500", **JOINED},
                )
            ],
        ),
        node("lookup_order", "tool"),
    ]


def test_httpx_and_requests_headers_only_inside_a_run_and_never_overwritten():
    """Instrumented clients add the headers inside a run only, keep headers the caller set,
    and instrumenting twice or uninstrumenting restores the original send."""
    original = httpx.Client.send.__trodo_original__
    trodo.instrument_httpx()
    assert httpx.Client.send.__trodo_original__ is original
    client = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://echo")
    seen: dict[str, dict] = {}

    @trodo.agent("caller")
    def caller() -> None:
        seen["inside"] = client.get("/headers").json()
        seen["own"] = client.get("/headers", headers={"traceparent": TRACEPARENT}).json()
        seen["expected"] = trodo.propagation_headers()

    with capture():
        caller()
        seen["outside"] = client.get("/headers").json()
    expected = {key.lower(): value for key, value in seen["expected"].items()}
    assert seen["inside"] == expected
    assert seen["own"] == {**expected, "traceparent": TRACEPARENT}
    assert seen["outside"] == {}
    uninstrument_httpx()
    assert httpx.Client.send is original
    uninstrument_requests()
    assert not hasattr(requests.Session.send, "__trodo_original__")


def test_fastapi_middleware_is_added_once():
    """trodo.fastapi_middleware(app) adds TrodoMiddleware once and returns the app; non-apps are refused."""
    app = FastAPI()
    assert trodo.fastapi_middleware(trodo.fastapi_middleware(app)) is app
    assert [item.cls for item in app.user_middleware] == [TrodoMiddleware]
    with pytest.raises(TypeError, match="TrodoMiddleware"):
        trodo.fastapi_middleware(object())


def test_import_loads_no_web_library():
    """``import trodo_trace`` (with the propagation API) imports no FastAPI, Starlette, httpx, requests or Flask."""
    code = (
        "import sys, trodo_trace\n"
        "print([m for m in ('fastapi', 'starlette', 'httpx', 'requests', 'flask', 'uvicorn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


async def test_tracing_disabled_passes_requests_through():
    """With TRODO_ENABLED off the middleware records nothing and the request is served as usual."""
    trodo.init(enabled=False)
    transport = httpx.ASGITransport(app=fastapi_app)
    with capture() as traces:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            response = await client.get(
                "/orders/5", headers={"X-Trodo-Run-Id": "run-1", "traceparent": TRACEPARENT}
            )
    assert response.status_code == 200
    assert response.json()["order"]["run_id"] is None
    assert traces.spans == []
