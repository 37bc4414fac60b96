"""Real service hops: uvicorn (FastAPI) and wsgiref (Flask) servers in subprocesses on 127.0.0.1,
called by an agent; both processes write to one local store file and the trees are read back from it."""

from __future__ import annotations

import httpx
import pytest
import requests
from apps.helpers import serve, store_tree, stored_run, stored_spans

import trodo_trace as trodo
from trodo_trace.integrations.http import uninstrument_httpx, uninstrument_requests

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    return tmp_path_factory.mktemp("services") / "trodo.db"


@pytest.fixture(scope="module")
def fastapi_url(shared_store, tmp_path_factory):
    with serve("asgi", shared_store, "orders-api", tmp_path_factory.mktemp("logs") / "asgi.log") as url:
        yield url


@pytest.fixture(scope="module")
def flask_url(shared_store, tmp_path_factory):
    with serve("wsgi", shared_store, "orders-wsgi", tmp_path_factory.mktemp("logs") / "wsgi.log") as url:
        yield url


@pytest.fixture(autouse=True)
def _caller(shared_store, monkeypatch):
    """The calling agent writes to the servers' store, as service "checkout-agent", with clients instrumented."""
    monkeypatch.setenv("TRODO_STORE", str(shared_store))
    trodo.init(service_name="checkout-agent")
    trodo.instrument_httpx()
    trodo.instrument_requests()
    yield
    uninstrument_httpx()
    uninstrument_requests()


def node(name, kind, service, children=(), status="ok"):
    return {"name": name, "kind": kind, "status": status, "service": service, "children": list(children)}


def test_fastapi_over_httpx_joins_the_callers_run(shared_store, fastapi_url):
    """Agent → httpx → uvicorn/FastAPI: the server's request, tool and LLM spans are in the caller's
    run and trace, the request span's parent is the calling tool, and the stored rollups count them."""

    @trodo.tool(capture_input=False)
    def fetch_order(client: httpx.Client, order_id: str) -> dict:
        return client.get(f"{fastapi_url}/orders/{order_id}").json()

    @trodo.agent("checkout")
    def checkout() -> dict:
        with httpx.Client() as client:
            return fetch_order(client, "42")

    body = checkout()
    run_id = trodo.last_run().run_id
    assert body["order"]["run_id"] == run_id
    trodo.flush()
    spans = stored_spans(shared_store, run_id, 5)
    assert store_tree(spans) == [
        node(
            "checkout",
            "run",
            "checkout-agent",
            [
                node(
                    "fetch_order",
                    "tool",
                    "checkout-agent",
                    [
                        node(
                            "GET /orders/{order_id}",
                            "chain",
                            "orders-api",
                            [
                                node("lookup_order", "tool", "orders-api"),
                                node("summarize", "llm", "orders-api"),
                            ],
                        )
                    ],
                )
            ],
        )
    ]
    by_name = {span["name"]: span for span in spans}
    assert by_name["GET /orders/{order_id}"]["parent_span_id"] == by_name["fetch_order"]["span_id"]
    assert len({span["trace_id"] for span in spans}) == 1
    llm_cost = by_name["summarize"]["attributes"]["trodo.llm.cost"]
    assert llm_cost > 0
    run = stored_run(shared_store, run_id)
    assert {k: run[k] for k in ("span_count", "tool_count", "error_count", "tokens_in", "tokens_out")} == {
        "span_count": 5,
        "tool_count": 2,
        "error_count": 0,
        "tokens_in": 100,
        "tokens_out": 20,
    }
    assert run["cost"] == pytest.approx(llm_cost)


async def test_fastapi_async_client_and_async_endpoint(shared_store, fastapi_url):
    """httpx.AsyncClient carries the headers too; the async endpoint's to_thread tool nests under the request."""

    @trodo.agent("async-checkout")
    async def checkout() -> dict:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{fastapi_url}/async/orders/5")).json()

    body = await checkout()
    run_id = trodo.last_run().run_id
    assert body["order"]["run_id"] == run_id
    trodo.flush()
    assert store_tree(stored_spans(shared_store, run_id, 3)) == [
        node(
            "async-checkout",
            "run",
            "checkout-agent",
            [
                node(
                    "GET /async/orders/{order_id}",
                    "chain",
                    "orders-api",
                    [node("lookup_order", "tool", "orders-api")],
                )
            ],
        )
    ]


@pytest.mark.parametrize("server", ["fastapi", "flask"])
@pytest.mark.parametrize(
    ("headers", "continues_trace"),
    [
        ({}, False),
        ({"X-Trodo-Run-Id": "not a run id", "traceparent": "00-garbage-01"}, False),
        ({"X-Trodo-Run-Id": "x" * 300, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, True),
    ],
    ids=["missing", "malformed", "traceparent-only"],
)
def test_missing_and_malformed_headers_are_traced_normally(
    request, shared_store, server, headers, continues_trace
):
    """Without usable run headers the server answers 200 and its tool starts a run of its own (no
    request span); a valid traceparent alone makes that run continue the caller's trace."""
    base = request.getfixturevalue(f"{server}_url")
    response = httpx.get(f"{base}/orders/1", headers=headers)
    assert response.status_code == 200
    run_id = response.json()["order"]["run_id"]
    service = "orders-api" if server == "fastapi" else "orders-wsgi"
    (root,) = spans = stored_spans(shared_store, run_id, 1)
    assert store_tree(spans) == [node("lookup_order", "tool", service)]
    assert root["attributes"]["trodo.run.span_count"] == 1
    if continues_trace:
        assert (root["trace_id"], root["parent_span_id"]) == (TRACE_ID, PARENT_ID)
    else:
        assert root["parent_span_id"] is None and root["trace_id"] != TRACE_ID


def test_flask_over_requests_joins_the_callers_run(shared_store, flask_url):
    """Agent → requests → wsgiref/Flask: request spans (a plain and a streamed response) are in the
    caller's run under the calling tool; a server error fails its request span."""

    @trodo.tool
    def call(path: str) -> int:
        return requests.get(f"{flask_url}{path}", timeout=10).status_code

    @trodo.agent("reader")
    def reader() -> list[int]:
        return [call("/orders/3"), call("/stream"), call("/fail")]

    assert reader() == [200, 200, 500]
    run_id = trodo.last_run().run_id
    trodo.flush()
    spans = stored_spans(shared_store, run_id, 10)
    assert store_tree(spans) == [
        node(
            "reader",
            "run",
            "checkout-agent",
            [
                node(
                    "call",
                    "tool",
                    "checkout-agent",
                    [
                        node(
                            "GET /orders/3",
                            "chain",
                            "orders-wsgi",
                            [node("lookup_order", "tool", "orders-wsgi")],
                        )
                    ],
                ),
                node(
                    "call",
                    "tool",
                    "checkout-agent",
                    [
                        node(
                            "GET /stream",
                            "chain",
                            "orders-wsgi",
                            [
                                node("render_line", "chain", "orders-wsgi"),
                                node("render_line", "chain", "orders-wsgi"),
                            ],
                        )
                    ],
                ),
                node(
                    "call",
                    "tool",
                    "checkout-agent",
                    [node("GET /fail", "chain", "orders-wsgi", status="error")],
                ),
            ],
        )
    ]
    failed = next(span for span in spans if span["name"] == "GET /fail")
    assert failed["attributes"]["http.response.status_code"] == 500
    run = stored_run(shared_store, run_id)
    assert (run["span_count"], run["tool_count"], run["error_count"]) == (10, 4, 1)
