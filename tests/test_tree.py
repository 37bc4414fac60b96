"""Whole run trees built by the decorators: sync, async, generators, errors and cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest

import trodo_trace as trodo
from trodo_trace.testing import capture

KEYS = (
    "trodo.run.id",
    "input.value",
    "output.value",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "trodo.llm.cost",
    "trodo.tool.name",
    "retrieval.documents.0.document.id",
    "trodo.retrieval.result_count",
    "trodo.run.span_count",
    "trodo.run.tool_count",
    "trodo.run.error_count",
    "trodo.run.total_tokens_in",
    "trodo.run.total_tokens_out",
    "trodo.run.total_cost",
    "trodo.run.status",
    "trodo.run.duration_ms",
    "trodo.distinct_id",
    "trodo.conversation_id",
)

RUN = "00000000000000000000000000000001"


def expected_tree(
    output_llm: str, output_tool: str = '["a","b"]', agent_output: str = '"done"'
) -> list[dict]:
    return [
        {
            "name": "support",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.id": RUN,
                "input.value": '{"question":"hi"}',
                "output.value": agent_output,
                "trodo.run.span_count": 5,
                "trodo.run.tool_count": 1,
                "trodo.run.error_count": 0,
                "trodo.run.total_tokens_in": 100,
                "trodo.run.total_tokens_out": 20,
                "trodo.run.total_cost": 0.0000270,
                "trodo.run.status": "ok",
                "trodo.run.duration_ms": pytest.approx(9.0, abs=8),
                "trodo.distinct_id": "u-1",
                "trodo.conversation_id": "c-1",
            },
            "children": [
                {
                    "name": "plan",
                    "kind": "chain",
                    "status": "OK",
                    "attributes": {
                        "trodo.run.id": RUN,
                        "input.value": '{"question":"hi"}',
                        "output.value": '"search"',
                    },
                    "children": [
                        {
                            "name": "lookup",
                            "kind": "retrieval",
                            "status": "OK",
                            "attributes": {
                                "trodo.run.id": RUN,
                                "input.value": '{"query":"hi"}',
                                "output.value": '[{"id":"d1","content":"doc","score":0.5}]',
                                "retrieval.documents.0.document.id": "d1",
                                "trodo.retrieval.result_count": 1,
                            },
                            "children": [],
                        }
                    ],
                },
                {
                    "name": "search",
                    "kind": "tool",
                    "status": "OK",
                    "attributes": {
                        "trodo.run.id": RUN,
                        "input.value": '{"query":"hi"}',
                        "output.value": output_tool,
                        "trodo.tool.name": "search",
                    },
                    "children": [],
                },
                {
                    "name": "complete",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "trodo.run.id": RUN,
                        "input.value": '{"prompt":"hi"}',
                        "output.value": output_llm,
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 100,
                        "gen_ai.usage.output_tokens": 20,
                        "trodo.llm.cost": 0.000027,
                    },
                    "children": [],
                },
            ],
        }
    ]


LLM_RESULT = {"text": "ok", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}
LLM_JSON = '{"text":"ok","usage":{"prompt_tokens":100,"completion_tokens":20}}'


def test_sync_agent_tree():
    """A sync agent → chain → retrieval, tool and llm run is one tree with rollups on the root."""

    @trodo.retrieval
    def lookup(query):
        return [{"id": "d1", "content": "doc", "score": 0.5}]

    @trodo.chain
    def plan(question):
        lookup(question)
        return "search"

    @trodo.tool
    def search(query):
        return ["a", "b"]

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt):
        return LLM_RESULT

    @trodo.agent("support", distinct_id="u-1", conversation_id="c-1")
    def support(question):
        plan(question)
        search(question)
        complete(question)
        return "done"

    with capture(deterministic=True) as traces:
        assert support(question="hi") == "done"
    assert traces.tree(KEYS) == expected_tree(LLM_JSON)
    root = traces.runs()[0]
    assert root.attributes["openinference.span.kind"] == "AGENT"
    assert root.attributes["user.id"] == "u-1"
    assert root.attributes["session.id"] == "c-1"
    assert root.attributes["gen_ai.conversation.id"] == "c-1"
    assert root.attributes["trodo.agent.name"] == "support"
    assert root.parent_id is None
    assert {s.trace_id for s in traces.spans} == {root.trace_id}


async def test_async_agent_tree():
    """The same tree comes out of async functions."""

    @trodo.retrieval
    async def lookup(query):
        await asyncio.sleep(0)
        return [{"id": "d1", "content": "doc", "score": 0.5}]

    @trodo.chain
    async def plan(question):
        await lookup(question)
        return "search"

    @trodo.tool
    async def search(query):
        await asyncio.sleep(0)
        return ["a", "b"]

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    async def complete(prompt):
        return LLM_RESULT

    @trodo.agent("support", distinct_id="u-1", conversation_id="c-1")
    async def support(question):
        await plan(question)
        await search(question)
        await complete(question)
        return "done"

    with capture(deterministic=True) as traces:
        assert await support("hi") == "done"
    assert traces.tree(KEYS) == expected_tree(LLM_JSON)


async def test_generator_agent_tree():
    """Generators and async generators keep their span open until exhausted; yields are the output."""

    @trodo.retrieval
    def lookup(query):
        yield {"id": "d1", "content": "doc", "score": 0.5}

    @trodo.chain
    def plan(question):
        list(lookup(question))
        return "search"

    @trodo.tool
    def search(query):
        yield "a"
        yield "b"

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    async def complete(prompt):
        yield "o"
        yield "k"
        yield {"usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    @trodo.agent("support", distinct_id="u-1", conversation_id="c-1")
    async def support(question):
        plan(question)
        assert "".join(search(question)) == "ab"
        chunks = [c async for c in complete(question)]
        assert len(chunks) == 3
        yield "done"

    with capture(deterministic=True) as traces:
        assert [x async for x in support("hi")] == ["done"]
    tree = traces.tree(KEYS)
    expected = expected_tree(
        '["o","k",{"usage":{"prompt_tokens":100,"completion_tokens":20}}]',
        output_tool='"ab"',
    )
    assert tree == expected
    llm = traces.by_name("complete")
    assert llm.attributes["trodo.llm.time_to_first_token_ms"] == 1.0  # deterministic clock: 1 ms a reading
    assert llm.attributes["trodo.generator.items"] == 3


def test_exception_is_recorded_and_reraised_unchanged():
    """The user's exception is re-raised as the same object; span, run and counts show the error."""
    boom = KeyError("missing")

    @trodo.tool
    def broken(x):
        raise boom

    @trodo.agent
    def agent():
        broken(1)

    with capture(deterministic=True) as traces, pytest.raises(KeyError) as raised:
        agent()
    assert raised.value is boom
    assert traces.tree(
        ("error.type", "trodo.run.status", "trodo.run.error_count", "trodo.run.error_summary")
    ) == [
        {
            "name": "agent",
            "kind": "run",
            "status": "ERROR",
            "attributes": {
                "error.type": "KeyError",
                "trodo.run.status": "error",
                "trodo.run.error_count": 2,
                "trodo.run.error_summary": "KeyError: 'missing'",
            },
            "children": [
                {
                    "name": "broken",
                    "kind": "tool",
                    "status": "ERROR",
                    "attributes": {"error.type": "KeyError"},
                    "children": [],
                }
            ],
        }
    ]
    event = traces.by_name("broken").events[0]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "KeyError"
    assert event["attributes"]["exception.message"] == "'missing'"
    assert "raise boom" in event["attributes"]["exception.stacktrace"]
    assert traces.by_name("broken").status_message == "KeyError: 'missing'"


def test_handled_tool_error_keeps_run_ok():
    """A tool error the agent handles leaves the run ok but counted in error_count."""

    @trodo.tool
    def flaky():
        raise TimeoutError("slow")

    @trodo.agent
    def agent():
        try:
            flaky()
        except TimeoutError:
            return "recovered"

    with capture() as traces:
        assert agent() == "recovered"
    root = traces.runs()[0]
    assert root.attributes["trodo.run.status"] == "ok"
    assert root.attributes["trodo.run.error_count"] == 1
    assert traces.by_name("flaky").attributes["error.type"] == "TimeoutError"


async def test_cancellation_is_recorded_as_such():
    """An asyncio cancellation ends the span with trodo.cancelled and is re-raised."""
    started = asyncio.Event()

    @trodo.tool
    async def slow():
        started.set()
        await asyncio.sleep(30)

    with capture() as traces:
        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = traces.by_name("slow")
    assert span.status == "ERROR"
    assert span.attributes["trodo.cancelled"] is True
    assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"


def test_generator_closed_early_and_abandoned():
    """A generator closed early or dropped unfinished ends its span with what it yielded."""

    @trodo.function
    def numbers():
        yield from range(10)

    with capture() as traces:
        gen = numbers()
        assert next(gen) == 0
        assert next(gen) == 1
        gen.close()
        abandoned = numbers()
        next(abandoned)
        del abandoned
    spans = [s for s in traces.spans if s.name == "numbers"]
    assert len(spans) == 2
    assert [json.loads(s.attributes["output.value"]) for s in spans] == [[0, 1], [0]]
    assert all(s.attributes["trodo.generator.closed_early"] is True for s in spans)
    assert all(s.status == "OK" for s in spans)


def test_generator_send_and_throw_pass_through():
    """send() and throw() reach the wrapped generator; its return value is kept."""

    @trodo.function
    def echo():
        received = []
        while True:
            try:
                value = yield len(received)
            except ValueError:
                return received
            received.append(value)

    with capture() as traces:
        gen = echo()
        assert next(gen) == 0
        assert gen.send("a") == 1
        assert gen.send("b") == 2
        with pytest.raises(StopIteration) as stop:
            gen.throw(ValueError("stop"))
    assert stop.value.value == ["a", "b"]
    assert traces.by_name("echo").status == "OK"


def test_spans_inside_generator_nest_under_it_and_consumer_context_is_clean():
    """Work done inside a generator nests under it; the consumer's spans between steps do not."""

    @trodo.tool
    def inner():
        return 1

    @trodo.chain
    def produce():
        yield inner()
        yield inner()

    @trodo.tool
    def consume(item):
        return item

    @trodo.agent
    def agent():
        for item in produce():
            consume(item)

    with capture(deterministic=True) as traces:
        agent()
    assert traces.tree() == [
        {
            "name": "agent",
            "kind": "run",
            "status": "OK",
            "children": [
                {
                    "name": "produce",
                    "kind": "chain",
                    "status": "OK",
                    "children": [
                        {"name": "inner", "kind": "tool", "status": "OK", "children": []},
                        {"name": "inner", "kind": "tool", "status": "OK", "children": []},
                    ],
                },
                {"name": "consume", "kind": "tool", "status": "OK", "children": []},
                {"name": "consume", "kind": "tool", "status": "OK", "children": []},
            ],
        }
    ]


def test_root_that_is_not_an_agent_is_a_run_of_its_own_kind():
    """A tool called outside any run is a run root that keeps kind tool."""

    @trodo.tool
    def lonely(x):
        return x

    with capture() as traces:
        lonely(1)
    span = traces.spans[0]
    assert span.kind == "tool"
    assert span.is_run_root
    assert span.attributes["trodo.agent.name"] == "lonely"
    assert span.attributes["trodo.run.span_count"] == 1
    assert span.attributes["trodo.run.tool_count"] == 1
