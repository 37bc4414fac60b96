"""Uses of the public API that must type-check under ``mypy --strict`` (never run; see tests/test_typing.py).

Each ``assert_type`` pins what a user's type checker sees: decorated functions keep their
signatures in every form, context managers yield the public ``Span``, ``init`` takes typed options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Tracer
from typing_extensions import assert_type

import trodo_trace as trodo
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler


# -- decorators: bare and with arguments, sync, async, generator, async generator, methods --------
@trodo.tool
def search(query: str, limit: int = 3) -> list[str]:
    return [query] * limit


@trodo.llm(model="gpt-4o-mini", provider="openai", temperature=0.2)
def complete(prompt: str) -> dict[str, Any]:
    return {"text": prompt}


@trodo.agent
async def answer(question: str) -> str:
    return question


@trodo.agent("support-bot", distinct_id="user-1", conversation_id="c-1", sub_run=True, metadata={"a": 1})
async def support(question: str) -> int:
    return len(question)


@trodo.chain("tokens")
def tokens(text: str) -> Iterator[str]:
    yield from text.split()


@trodo.retrieval
async def documents(query: str) -> AsyncIterator[dict[str, Any]]:
    yield {"id": query}


@trodo.function()
def parse(text: str) -> dict[str, str]:
    return {"text": text}


@trodo.trace
def plain(x: int) -> int:
    return x


@trodo.trace("rank", kind="chain", attributes={"k": 1}, capture_input=False, capture_output=False)
def rank(items: list[int]) -> list[int]:
    return sorted(items)


@trodo.llm
def bare_llm(prompt: str) -> str:
    return prompt


class Agent:
    @trodo.tool("lookup")
    def lookup(self, key: str) -> str:
        return key

    @trodo.tool
    @staticmethod
    def helper(x: int) -> int:
        return x

    @trodo.function
    @classmethod
    def build(cls, name: str) -> Agent:
        return cls()


assert_type(search("refunds"), list[str])
assert_type(search(query="refunds", limit=2), list[str])  # the parameters keep their names
assert_type(complete("hi"), dict[str, Any])
answer_call = assert_type(answer("hi"), Coroutine[Any, Any, str])
support_call = assert_type(support("hi"), Coroutine[Any, Any, int])
assert_type(tokens("a b"), Iterator[str])
assert_type(documents("q"), AsyncIterator[dict[str, Any]])
assert_type(parse("x"), dict[str, str])
assert_type(plain(1), int)
assert_type(rank([2, 1]), list[int])
assert_type(bare_llm("p"), str)
assert_type(Agent().lookup("k"), str)
assert_type(Agent.helper(1), int)
assert_type(Agent.build("n"), Agent)


async def use_async() -> None:
    assert_type(await answer("hi"), str)
    async for document in documents("q"):
        assert_type(document, dict[str, Any])
    async with trodo.tool("fetch") as span:
        assert_type(span, trodo.Span)
    async with trodo.agent("async-agent") as run_span:
        assert_type(run_span, trodo.Span)


# -- context managers yield the public Span ---------------------------------------------------------
with trodo.tool("x") as span:
    assert_type(span, trodo.Span)
    span.set_input({"q": 1})
    span.set_output("done")
    span.set_attribute("k", 1)
    span.set_attributes({"k": 2})
    span.set_usage(input_tokens=10, output_tokens=2)
    span.set_model("gpt-4o-mini", provider="openai")
with trodo.tool() as unnamed:
    assert_type(unnamed, trodo.Span)
with trodo.llm(model="m") as llm_span, trodo.retrieval("r") as r_span, trodo.chain("c") as c_span:
    assert_type(llm_span, trodo.Span)
    assert_type(r_span, trodo.Span)
    assert_type(c_span, trodo.Span)
with trodo.function("f") as f_span, trodo.trace("t", kind="tool") as t_span:
    assert_type(f_span, trodo.Span)
    assert_type(t_span, trodo.Span)
with trodo.with_span("load", kind="tool", attributes={"path": "cfg"}) as block:
    assert_type(block, trodo.Span)
assert_type(trodo.tool("x"), trodo.SpanSpec)

current_run = trodo.current_run()
assert_type(current_run, trodo.Run | None)
if current_run is not None:
    assert_type(current_run.run_id, str)
    current_run.set_input("in")
    current_run.set_output("out")
    current_run.set_metadata({"plan": "pro"}, tier=1)
    current_run.set_error_summary("failed")
assert_type(trodo.current_span(), trodo.Span | None)
assert_type(trodo.last_run(), trodo.Run | None)


# -- runs, lifecycle and configuration ---------------------------------------------------------------
def triage(run: trodo.Run) -> str:
    return run.run_id


async def triage_async(run: trodo.Run) -> int:
    return 1


assert_type(trodo.wrap_agent("triage", triage), tuple[str, str])
assert_type(trodo.wrap_agent("triage", triage_async, distinct_id="u"), Awaitable[tuple[int, str]])
assert_type(trodo.for_user("u").wrap_agent("triage", triage), tuple[str, str])

trodo.init()
trodo.init("site-1", "http://127.0.0.1:4318", auto_events=True, batch_size=10)
trodo.init(
    service_name="svc",
    store_path="trodo.db",
    protocol="grpc",
    headers={"authorization": "Bearer x"},
    capture_content=False,
    max_value_length=4096,
    mask=lambda value: value,
    pricing={"my-model": {"input": 1.0, "output": 2.0}},
    compression="none",
    export_timeout_ms=1000,
    instrument=["openai"],
)
trodo.init(instrument=False)
assert_type(trodo.flush(), bool)
assert_type(trodo.flush(timeout=1.0), bool)
assert_type(trodo.shutdown(timeout=1.0), None)
assert_type(trodo.get_tracer(), Tracer)
assert_type(trodo.stats(), dict[str, Any])

# -- propagation, display, events, integrations -------------------------------------------------------
assert_type(trodo.propagation_headers(), dict[str, str])
token = trodo.run_context()
assert_type(token, trodo.RunContext | None)
assert_type(trodo.join_run(token, search, "q", limit=1), list[str])
joined_call = assert_type(trodo.join_run("0" * 32, answer, "q"), Coroutine[Any, Any, str])
with trodo.join_run({"X-Trodo-Run-Id": "0" * 32}) as joined:
    assert_type(joined.run_id if joined is not None else None, str | None)
    reference: trodo.RunRef | None = joined
trodo.track("user-1", "signed_up", {"plan": "pro"}, category="custom")
user = trodo.for_user("user-1")
user.track("clicked")
user.capture_error(ValueError("x"), severity="warning")
assert_type(trodo.show("0" * 32).run_id, str)
assert_type(trodo.instrument_langchain(), TrodoCallbackHandler)
assert_type(trodo.instrument_llamaindex(), TrodoLlamaIndexHandler)
assert_type(trodo.fastapi_middleware(FastAPI()), FastAPI)
assert_type(trodo.__version__, str)
trodo.instrument_httpx()
trodo.instrument_requests()
assert_type(trodo.instrument_openai(), None)
assert_type(trodo.instrument_anthropic(), None)
trodo.install_asyncio_handler()
assert_type(trodo.feedback("0" * 32, score=1, label="correct", comment="ok", distinct_id="user-1"), None)
assert_type(trodo.ui(port=0, store=".trodo/trodo.db"), str)
