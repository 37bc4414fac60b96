"""A FastAPI service whose requests join the caller's run (served by uvicorn in the tests)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request

import trodo_trace as trodo

app = trodo.fastapi_middleware(FastAPI())


@trodo.tool
def lookup_order(order_id: str) -> dict:
    span = trodo.current_span()
    return {"id": order_id, "status": "shipped", "run_id": span.run_id if span else None}


@trodo.llm(model="gpt-4o-mini", provider="openai")
def summarize(order: dict) -> dict:
    return {"text": f"order {order['id']} shipped", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}


@app.get("/orders/{order_id}")
def get_order(order_id: str) -> dict:
    order = lookup_order(order_id)
    return {"order": order, "summary": summarize(order)["text"]}


@app.get("/async/orders/{order_id}")
async def get_order_async(order_id: str) -> dict:
    order = await asyncio.to_thread(lookup_order, order_id)
    return {"order": order}


@app.get("/fail")
def fail() -> dict:
    lookup_order("broken")
    raise RuntimeError("inventory database unreachable")


@app.get("/headers")
def headers(request: Request) -> dict:
    return {
        name: value for name, value in request.headers.items() if name in ("x-trodo-run-id", "traceparent")
    }
