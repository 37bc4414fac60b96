"""The cohere SDK's v2 client, instrumented: chat, chat_stream, embed and rerank, sync and async,
tool calls, errors, content capture and counted-once — against the fake Cohere server."""

from __future__ import annotations

import asyncio
import gc
import json

import cohere
import pytest
from provider_fakes import LLM_KEYS, RUN_KEYS, cost, messages_of
from provider_fakes_cm import async_cohere_client, cohere_client, fake_cohere  # noqa: F401

import trodo_trace as trodo
from trodo_trace.testing import capture

MODEL = "command-a-03-2025"
EMBED_MODEL = "embed-v4.0"
RERANKER = "rerank-v3.5"  # priced per search (not a token price)
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _llm(attributes: dict) -> dict:
    return {k: attributes[k] for k in LLM_KEYS if k in attributes and k != "trodo.run.id"}


def test_chat_is_an_llm_span_of_the_run(cohere_client, fake_cohere):
    """chat() in an agent (client made before tracing started): one LLM child with the whole contract."""
    fake_cohere.reply("Sunny.", usage=(120, 8))

    @trodo.agent("weather-bot")
    def bot():
        response = cohere_client.chat(
            model=MODEL,
            messages=[{"role": "system", "content": "Be terse."}, *MESSAGES],
            tools=[TOOL],
            temperature=0.3,
            max_tokens=50,
            p=0.9,
        )
        return response.message.content[0].text

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    expected = cost(MODEL, 120, 8)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 120,
                "trodo.run.total_tokens_out": 8,
                "trodo.run.total_cost": pytest.approx(expected),
            },
            "children": [
                {"name": "cohere.chat", "kind": "llm", "status": "OK", "attributes": {}, "children": []}
            ],
        }
    ]
    span = traces.by_name("cohere.chat")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "cohere",
        "llm.provider": "cohere",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 8,
        "llm.token_count.total": 128,
        "gen_ai.response.finish_reasons": ("COMPLETE",),
        "gen_ai.response.id": "chat-fake",
        "trodo.llm.cost": pytest.approx(expected),
        "http.response.status_code": 200,
    }
    assert span.attributes["gen_ai.request.top_p"] == 0.9
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {
        "model": MODEL,
        "temperature": 0.3,
        "max_tokens": 50,
        "p": 0.9,
    }
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"]) == TOOL
    assert json.loads(span.attributes["output.value"]) == {"role": "assistant", "content": "Sunny."}


def test_tool_call_round_trip(cohere_client, fake_cohere):
    """A TOOL_CALL reply: its plan and tool calls are the output; the follow-up keeps the tool call and result."""
    fake_cohere.reply(
        "I will look it up.",
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "tc_1"}],
    )
    fake_cohere.reply("18C in Paris.")
    with capture() as traces:
        first = cohere_client.chat(model=MODEL, messages=MESSAGES, tools=[TOOL])
        tool_call = first.message.tool_calls[0]
        cohere_client.chat(
            model=MODEL,
            tools=[TOOL],
            messages=[
                *MESSAGES,
                {
                    "role": "assistant",
                    "tool_plan": first.message.tool_plan,
                    "tool_calls": first.message.tool_calls,
                },
                {"role": "tool", "tool_call_id": tool_call.id, "content": "18C"},
            ],
        )
    asked, answered = traces.spans
    assert messages_of(asked.attributes, "output") == [
        {
            "role": "assistant",
            "content": "I will look it up.",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "tc_1",
        }
    ]
    assert asked.attributes["gen_ai.response.finish_reasons"] == ("TOOL_CALL",)
    history = messages_of(answered.attributes)
    assert history[1]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert (history[2]["role"], history[2]["tool_call_id"], history[2]["content"]) == ("tool", "tc_1", "18C")


def test_chat_stream_text_and_tool_calls(cohere_client, fake_cohere):
    """chat_stream: every event reaches the caller; the span has the text, tool call, usage and TTFT."""
    fake_cohere.reply("It is sunny in Paris today.", usage=(30, 7))
    fake_cohere.reply(
        "Checking.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=(31, 9)
    )
    with capture() as traces:
        stream = cohere_client.chat_stream(model=MODEL, messages=MESSAGES)
        assert traces.spans == []
        events = [event.type for event in stream]
        tool_events = [
            event.type for event in cohere_client.chat_stream(model=MODEL, messages=MESSAGES, tools=[TOOL])
        ]
    assert events[0] == "message-start" and events[-1] == "message-end" and "content-delta" in events
    assert "tool-call-delta" in tool_events
    text_span, tool_span = traces.spans
    assert text_span.status == "OK"
    assert (
        text_span.attributes["gen_ai.usage.input_tokens"],
        text_span.attributes["gen_ai.usage.output_tokens"],
    ) == (30, 7)
    assert text_span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert text_span.attributes["trodo.llm.cost"] == pytest.approx(cost(MODEL, 30, 7))
    assert messages_of(text_span.attributes, "output") == [
        {"role": "assistant", "content": "It is sunny in Paris today."}
    ]
    output = messages_of(tool_span.attributes, "output")[0]
    assert output["content"] == "Checking."
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}
    assert tool_span.attributes["gen_ai.response.finish_reasons"] == ("TOOL_CALL",)


def test_embed_is_an_embedding_span(cohere_client, fake_cohere):
    """embed(): kind function, OpenInference EMBEDDING, texts, input tokens and cost; no output tokens."""
    fake_cohere.reply(usage=(12, 0))

    @trodo.agent("indexer")
    def index():
        return cohere_client.embed(
            model=EMBED_MODEL,
            input_type="search_document",
            texts=["a cat", "a dog"],
            embedding_types=["float"],
        )

    with capture(deterministic=True) as traces:
        response = index()
    assert len(response.embeddings.float_) == 2
    span = traces.by_name("cohere.embed")
    assert (
        span.kind,
        span.attributes["openinference.span.kind"],
        span.attributes["gen_ai.operation.name"],
    ) == (
        "function",
        "EMBEDDING",
        "embeddings",
    )
    assert span.attributes["embedding.model_name"] == EMBED_MODEL
    assert [span.attributes[f"embedding.embeddings.{i}.embedding.text"] for i in (0, 1)] == ["a cat", "a dog"]
    assert (
        span.attributes["gen_ai.usage.input_tokens"] == 12
        and "gen_ai.usage.output_tokens" not in span.attributes
    )
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost(EMBED_MODEL, 12, 0))
    assert json.loads(span.attributes["output.value"]) == {"embeddings": 2, "dimensions": 8}
    assert traces.runs()[0].attributes["trodo.run.total_cost"] == pytest.approx(cost(EMBED_MODEL, 12, 0))


def test_rerank_is_a_reranker_span(cohere_client):
    """rerank(): a retrieval span with OpenInference RERANKER attributes, ranked documents and search cost."""

    @trodo.agent("search")
    def search():
        return cohere_client.rerank(
            model=RERANKER,
            query="paris weather",
            documents=["London is rainy.", "Paris weather is sunny.", "Berlin in winter."],
            top_n=2,
        )

    with capture(deterministic=True) as traces:
        ranked = search()
    assert [r.index for r in ranked.results] == [1, 0]
    assert traces.tree() == [
        {
            "name": "search",
            "kind": "run",
            "status": "OK",
            "children": [{"name": "cohere.rerank", "kind": "retrieval", "status": "OK", "children": []}],
        }
    ]
    attributes = traces.by_name("cohere.rerank").attributes
    reranker = {k: v for k, v in attributes.items() if k.startswith("reranker.")}
    assert reranker == {
        "reranker.model_name": RERANKER,
        "reranker.top_k": 2,
        "reranker.query": "paris weather",
        "reranker.input_documents.0.document.content": "London is rainy.",
        "reranker.input_documents.1.document.content": "Paris weather is sunny.",
        "reranker.input_documents.2.document.content": "Berlin in winter.",
        "reranker.output_documents.0.document.id": "1",
        "reranker.output_documents.0.document.score": 1.0,
        "reranker.output_documents.0.document.content": "Paris weather is sunny.",
        "reranker.output_documents.1.document.id": "0",
        "reranker.output_documents.1.document.score": 0.0,
        "reranker.output_documents.1.document.content": "London is rainy.",
    }
    assert attributes["openinference.span.kind"] == "RERANKER"
    assert (attributes["cohere.billed_units.search_units"], attributes["trodo.llm.cost"]) == (
        1,
        pytest.approx(0.002),
    )
    assert traces.runs()[0].attributes["trodo.run.total_cost"] == pytest.approx(0.002)


@pytest.mark.parametrize(
    ("status", "error"), [(429, cohere.TooManyRequestsError), (500, cohere.InternalServerError)]
)
def test_http_errors_reach_the_caller_unchanged(cohere_client, fake_cohere, status, error):
    """An HTTP error: the SDK's exception reaches the caller; the span is ERROR with error.type and status."""
    fake_cohere.fail(status, "slow down")
    with capture() as traces:
        with pytest.raises(error) as caught:
            cohere_client.chat(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == status
    span = traces.by_name("cohere.chat")
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        f"cohere.errors.{error.__module__.rsplit('.', 1)[-1]}.{error.__name__}",
        status,
    )


def test_stream_errors_dropped_and_abandoned(cohere_client, fake_cohere):
    """A 429 on a stream, a connection dropped mid-stream, and a stream abandoned after one event."""
    fake_cohere.fail(429)
    fake_cohere.reply("one two three four five six", drop_after=3)
    with capture() as traces:
        with pytest.raises(cohere.TooManyRequestsError):
            list(cohere_client.chat_stream(model=MODEL, messages=MESSAGES))
        received = []
        with pytest.raises(Exception) as dropped:
            for event in cohere_client.chat_stream(model=MODEL, messages=MESSAGES):
                received.append(event)
        stream = cohere_client.chat_stream(model=MODEL, messages=MESSAGES)
        next(iter(stream))
        del stream
        gc.collect()
    limited, cut, abandoned = traces.spans
    assert (limited.status, limited.attributes["http.response.status_code"]) == ("ERROR", 429)
    assert cut.status == "ERROR" and cut.attributes["error.type"].endswith(type(dropped.value).__name__)
    assert len(received) == 3
    assert messages_of(cut.attributes, "output")[0]["content"] == "one two three "
    assert abandoned.attributes["trodo.llm.stream.closed_early"] is True


async def test_async_client(async_cohere_client, fake_cohere):
    """AsyncClientV2: chat, chat_stream, embed and rerank in parallel — one span each, under the agent."""
    fake_cohere.reply("async", usage=(5, 1))

    @trodo.agent("async-bot")
    async def bot():
        async def streamed():
            return [
                event.type async for event in async_cohere_client.chat_stream(model=MODEL, messages=MESSAGES)
            ]

        return await asyncio.gather(
            async_cohere_client.chat(model=MODEL, messages=MESSAGES),
            streamed(),
            async_cohere_client.embed(
                model=EMBED_MODEL, input_type="search_query", texts=["q"], embedding_types=["float"]
            ),
            async_cohere_client.rerank(model=RERANKER, query="q", documents=["q a", "b"]),
        )

    with capture() as traces:
        await bot()
    root = traces.runs()[0]
    children = sorted((s.name, s.kind, s.status) for s in traces.spans if s.parent_id == root.span_id)
    assert children == [
        ("cohere.chat", "llm", "OK"),
        ("cohere.chat", "llm", "OK"),
        ("cohere.embed", "function", "OK"),
        ("cohere.rerank", "retrieval", "OK"),
    ]
    assert all(
        span.attributes.get("gen_ai.usage.input_tokens")
        for span in traces.spans
        if span.name == "cohere.chat"
    )


def test_capture_content_off_keeps_counts_drops_messages(fake_cohere):
    """capture_content=False: model, tokens, scores stay; no message, tool schema, text, query or document."""
    trodo.init(capture_content=False)
    client = cohere.ClientV2(api_key="k", base_url=fake_cohere.base_url, max_retries=0)
    with capture() as traces:
        client.chat(model=MODEL, messages=MESSAGES, tools=[TOOL])
        list(client.chat_stream(model=MODEL, messages=MESSAGES))
        client.embed(
            model=EMBED_MODEL, input_type="search_query", texts=["secret"], embedding_types=["float"]
        )
        client.rerank(model=RERANKER, query="secret", documents=["secret doc"])
    for span in traces.spans:
        leaked = [
            k
            for k in span.attributes
            if k.startswith(
                (
                    "llm.input_messages",
                    "llm.output_messages",
                    "llm.tools",
                    "embedding.embeddings",
                    "input.",
                    "output.",
                )
            )
            or k in ("reranker.query",)
            or k.endswith("document.content")
        ]
        assert leaked == [], span.name
    assert traces.spans[0].attributes["gen_ai.usage.input_tokens"] == 10
    assert traces.by_name("cohere.rerank").attributes["reranker.output_documents.0.document.score"] == 1.0


def test_counted_once_inside_llm_decorator(cohere_client, fake_cohere):
    """A chat inside @trodo.llm merges into the decorator's LLM span: one LLM row, tokens counted once."""
    fake_cohere.reply("hi", usage=(40, 4))

    @trodo.llm(model=MODEL, provider="cohere")
    def complete(prompt):
        return cohere_client.chat(model=MODEL, messages=[{"role": "user", "content": prompt}])

    @trodo.agent("bot")
    def bot():
        return complete("hello").message.content[0].text

    with capture(deterministic=True) as traces:
        assert bot() == "hi"
    assert [(s.name, s.kind) for s in traces.spans] == [("complete", "llm"), ("bot", "run")]
    span = traces.by_name("complete")
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["trodo.llm.provider_calls"]) == (
        40,
        1,
    )
    root = traces.runs()[0].attributes
    assert (root["trodo.run.total_tokens_in"], root["trodo.run.total_tokens_out"]) == (40, 4)
    assert root["trodo.run.total_cost"] == pytest.approx(cost(MODEL, 40, 4))
