"""The openai SDK, instrumented: whole span trees for chat, streams, raw responses, parse, Responses,
embeddings, Azure, errors and content capture — the real SDK against the fake server."""

from __future__ import annotations

import asyncio
import gc
import json
import threading

import openai
import pytest
from provider_fakes import (  # noqa: F401
    LLM_KEYS,
    RUN_KEYS,
    async_openai_client,
    cost,
    fake_openai,
    messages_of,
    openai_client,
)
from pydantic import BaseModel

import trodo_trace as trodo
from trodo_trace.testing import capture

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _llm(span_attributes: dict, **expected) -> dict:
    return {k: span_attributes[k] for k in LLM_KEYS if k in span_attributes and k != "trodo.run.id"}


def test_chat_completion_is_an_llm_span_of_the_run(openai_client, fake_openai):
    """A chat completion inside an agent is one LLM child with model, usage, cost, messages and params."""
    fake_openai.reply("Sunny.", usage=(30, 4), cached_tokens=10, reasoning_tokens=2)

    @trodo.agent("weather-bot")
    def bot():
        reply = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, temperature=0.2, max_tokens=50, tools=[WEATHER_TOOL]
        )
        return reply.choices[0].message.content

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 30,
                "trodo.run.total_tokens_out": 4,
                "trodo.run.total_cost": pytest.approx(cost("gpt-4o-mini", 30, 4, cache_read=10)),
            },
            "children": [
                {
                    "name": "openai.chat.completions",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {},
                    "children": [],
                }
            ],
        }
    ]
    span = traces.by_name("openai.chat.completions")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "llm.provider": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 4,
        "llm.token_count.total": 34,
        "llm.token_count.prompt_details.cache_read": 10,
        "llm.token_count.completion_details.reasoning": 2,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": "chatcmpl-fake",
        "trodo.llm.cost": pytest.approx(cost("gpt-4o-mini", 30, 4, cache_read=10)),
    }
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"]) == WEATHER_TOOL
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert json.loads(span.attributes["input.value"]) == {"messages": MESSAGES}
    assert json.loads(span.attributes["output.value"]) == {"role": "assistant", "content": "Sunny."}
    assert span.attributes["gen_ai.usage.cache_read_input_tokens"] == 10
    assert fake_openai.requests[0].body["messages"] == MESSAGES  # the request went out unchanged


def test_chat_tool_calls_are_output_message_attributes(openai_client, fake_openai):
    """Tool calls of the reply become llm.output_messages.0.message.tool_calls.N.tool_call.*."""
    fake_openai.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}]
    )
    with capture() as traces:
        reply = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL]
        )
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    span = traces.by_name("openai.chat.completions")
    assert span.attributes["trodo.run.id"]  # outside any run the call is a run of its own
    assert messages_of(span.attributes, "output") == [
        {
            "role": "assistant",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "call_1",
        }
    ]
    assert span.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_assistant_tool_calls_and_tool_results_in_the_prompt(openai_client):
    """A prompt with an assistant tool call and its tool result keeps both as input messages."""
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    with capture() as traces:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=history)
    inputs = messages_of(traces.by_name("openai.chat.completions").attributes)
    assert inputs[2] == {
        "role": "assistant",
        "tool_calls.0.tool_call.function.name": "get_weather",
        "tool_calls.0.tool_call.function.arguments": '{"city":"Paris"}',
    }
    assert inputs[3] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


def test_stream_with_usage_chunk(openai_client, fake_openai):
    """stream=True with include_usage: the caller gets every chunk; the span has text, usage, cost, TTFT."""
    fake_openai.reply("It is sunny in Paris today.", usage=(21, 7))
    with capture() as traces:
        stream = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert isinstance(stream, openai.Stream)
        assert traces.spans == []  # nothing ends before the stream does
        chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "It is sunny in Paris today."
    )
    assert chunks[-1].usage.prompt_tokens == 21
    span = traces.by_name("openai.chat.completions")
    assert span.status == "OK"
    assert span.attributes["gen_ai.usage.input_tokens"] == 21
    assert span.attributes["gen_ai.usage.output_tokens"] == 7
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost("gpt-4o-mini", 21, 7))
    assert span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert messages_of(span.attributes, "output") == [
        {"role": "assistant", "content": "It is sunny in Paris today."}
    ]
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_stream_without_usage_has_content_but_no_tokens(openai_client):
    """stream=True without include_usage: the response has no usage, so the span has none (and no cost)."""
    with capture() as traces:
        with openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as stream:
            text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "Hello from the fake server."
    span = traces.by_name("openai.chat.completions")
    assert span.status == "OK"
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert "trodo.llm.cost" not in span.attributes
    assert "trodo.llm.stream.closed_early" not in span.attributes
    assert messages_of(span.attributes, "output")[0]["content"] == text


def test_streamed_tool_call_arguments_are_joined(openai_client, fake_openai):
    """Tool call deltas of a stream are joined into the call's name and arguments."""
    fake_openai.reply(None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    with capture() as traces:
        for _ in openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
        ):
            pass
    output = messages_of(traces.by_name("openai.chat.completions").attributes, "output")[0]
    assert output["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}


def test_stream_closed_early_ends_the_span_with_what_it_saw(openai_client, fake_openai):
    """Breaking out of a stream inside `with` ends the span with the text seen so far, marked closed early."""
    fake_openai.reply("one two three four five six seven eight nine", usage=(5, 9))
    with capture() as traces:
        with openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
    span = traces.by_name("openai.chat.completions")
    assert span.status == "OK"
    assert span.attributes["trodo.llm.stream.closed_early"] is True
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three "
    assert "gen_ai.usage.input_tokens" not in span.attributes  # the usage chunk was never read


def test_abandoned_stream_ends_its_span_when_collected(openai_client):
    """A stream dropped without being read or closed ends its span when garbage collected."""
    with capture() as traces:
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(stream))
        del stream
        gc.collect()
    span = traces.by_name("openai.chat.completions")
    assert span.attributes["trodo.llm.stream.closed_early"] is True


def test_connection_dropped_mid_stream(openai_client, fake_openai):
    """A connection cut mid-stream: the SDK's error reaches the caller; the span is ERROR with the text seen."""
    fake_openai.reply("one two three four five six", drop_after=2)
    received = []
    with capture() as traces:
        with pytest.raises(Exception) as caught:
            for chunk in openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ):
                received.append(chunk)
    span = traces.by_name("openai.chat.completions")
    assert span.status == "ERROR"
    assert span.attributes["error.type"].endswith(type(caught.value).__name__)
    assert len(received) == 2
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three "


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [(429, openai.RateLimitError, 0), (500, openai.InternalServerError, None)],
)
def test_http_errors_reach_the_caller_unchanged(openai_client, fake_openai, status, error, retry_after):
    """An HTTP error: the SDK's exception reaches the caller as is; the span is ERROR with error.type and status."""
    fake_openai.fail(status, "slow down", retry_after=retry_after)

    @trodo.agent
    def bot():
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with capture() as traces:
        with pytest.raises(error) as caught:
            bot()
    assert caught.value.status_code == status
    span = traces.by_name("openai.chat.completions")
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        f"openai.{error.__name__}",
        status,
    )
    assert span.events[0]["name"] == "exception"
    assert traces.runs()[0].attributes["trodo.run.error_count"] == 2


def test_retried_rate_limit_is_one_span(fake_openai):
    """A 429 with retry-after that the SDK retries is one OK span (the retries are inside the call)."""
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=2)
    fake_openai.fail(429, retry_after=0)
    with capture() as traces:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.close()
    assert [(s.name, s.status) for s in traces.spans] == [("openai.chat.completions", "OK")]
    assert len(fake_openai.requests) == 2


def test_timeout_and_connection_errors(fake_openai):
    """A client timeout and a refused connection are ERROR spans; the SDK's exceptions reach the caller."""
    fake_openai.reply("late", delay=1.0)
    slow = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0, timeout=0.1)
    nowhere = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    with capture() as traces:
        with pytest.raises(openai.APITimeoutError):
            slow.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.APIConnectionError):
            nowhere.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    slow.close()
    nowhere.close()
    assert [(s.status, s.attributes["error.type"]) for s in traces.spans] == [
        ("ERROR", "openai.APITimeoutError"),
        ("ERROR", "openai.APIConnectionError"),
    ]


def test_with_raw_response_returns_the_raw_object(openai_client, fake_openai):
    """with_raw_response: the caller gets the SDK's raw response; the span has the parsed usage and status."""
    fake_openai.reply("raw", usage=(8, 1))
    with capture() as traces:
        raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raw.headers["content-type"] == "application/json"
        assert raw.parse().choices[0].message.content == "raw"
    span = traces.by_name("openai.chat.completions")
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["http.response.status_code"]) == (
        8,
        200,
    )


def test_with_raw_response_stream(openai_client, fake_openai):
    """with_raw_response and stream=True: parse() gives the stream; its span ends when it is read."""
    fake_openai.reply("raw stream", usage=(3, 2))
    with capture() as traces:
        raw = openai_client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "raw stream"
    span = traces.by_name("openai.chat.completions")
    assert span.attributes["gen_ai.usage.output_tokens"] == 2


class Weather(BaseModel):
    city: str
    celsius: int


def test_parse_structured_output(openai_client, fake_openai):
    """chat.completions.parse(): the parsed object reaches the caller; the span records the JSON reply."""
    fake_openai.reply('{"city": "Paris", "celsius": 18}', usage=(40, 9))
    with capture() as traces:
        completion = openai_client.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Weather
        )
    assert completion.choices[0].message.parsed == Weather(city="Paris", celsius=18)
    span = traces.by_name("openai.chat.completions")
    assert [s.name for s in traces.spans] == ["openai.chat.completions"]
    assert messages_of(span.attributes, "output")[0]["content"] == '{"city": "Paris", "celsius": 18}'
    assert span.attributes["gen_ai.usage.input_tokens"] == 40
    assert "Weather" in span.attributes["llm.invocation_parameters"]


def test_chat_stream_helper(openai_client, fake_openai):
    """chat.completions.stream(): one span, ended when the helper's stream is done."""
    fake_openai.reply("helper text", usage=(4, 2))
    with capture() as traces:
        with openai_client.chat.completions.stream(
            model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
        ) as stream:
            final = stream.get_final_completion()
    assert final.choices[0].message.content == "helper text"
    span = traces.by_name("openai.chat.completions")
    assert (span.status, span.attributes["gen_ai.usage.output_tokens"]) == ("OK", 2)


def test_responses_create_and_stream(openai_client, fake_openai):
    """responses.create, plain and streamed: openai.responses spans with instructions, input, output, usage."""
    fake_openai.reply("Bonjour.", usage=(12, 3), cached_tokens=4, reasoning_tokens=1)
    fake_openai.reply("Streamed bonjour.", usage=(13, 4))
    with capture() as traces:
        response = openai_client.responses.create(
            model="gpt-4.1", instructions="Answer in French.", input="Hello", max_output_tokens=20
        )
        events = list(openai_client.responses.create(model="gpt-4.1", input="Hello", stream=True))
    assert response.output_text == "Bonjour."
    assert events[-1].type == "response.completed"
    plain, streamed = traces.spans
    assert (plain.name, streamed.name) == ("openai.responses", "openai.responses")
    assert _llm(plain.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "llm.provider": "openai",
        "gen_ai.request.model": "gpt-4.1",
        "gen_ai.response.model": "gpt-4.1",
        "gen_ai.request.max_tokens": 20,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "llm.token_count.total": 15,
        "llm.token_count.prompt_details.cache_read": 4,
        "llm.token_count.completion_details.reasoning": 1,
        "gen_ai.response.finish_reasons": ("completed",),
        "gen_ai.response.id": "resp_fake",
        "trodo.llm.cost": pytest.approx(cost("gpt-4.1", 12, 3, cache_read=4)),
    }
    assert messages_of(plain.attributes) == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
    ]
    assert messages_of(plain.attributes, "output") == [{"role": "assistant", "content": "Bonjour."}]
    assert messages_of(streamed.attributes, "output") == [
        {"role": "assistant", "content": "Streamed bonjour."}
    ]
    assert streamed.attributes["gen_ai.usage.output_tokens"] == 4
    assert streamed.attributes["trodo.llm.time_to_first_token_ms"] > 0


def test_responses_function_call_output(openai_client, fake_openai):
    """A Responses function call is an output tool call; a function_call_output input is a tool message."""
    fake_openai.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_9"}]
    )
    with capture() as traces:
        openai_client.responses.create(
            model="gpt-4.1",
            input=[
                {"role": "user", "content": "Weather?"},
                {"type": "function_call_output", "call_id": "c", "output": "18C"},
            ],
            tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        )
    span = traces.by_name("openai.responses")
    assert messages_of(span.attributes)[1] == {"role": "tool", "content": "18C", "tool_call_id": "c"}
    assert messages_of(span.attributes, "output")[0]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"])["name"] == "get_weather"


def test_embeddings_span(openai_client, fake_openai):
    """embeddings.create: kind function, OpenInference EMBEDDING, operation embeddings, tokens and cost."""
    fake_openai.reply(usage=(6, 0))

    @trodo.agent
    def indexer():
        return openai_client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])

    with capture(deterministic=True) as traces:
        result = indexer()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert traces.tree(("openinference.span.kind", "gen_ai.operation.name", "gen_ai.usage.input_tokens")) == [
        {
            "name": "indexer",
            "kind": "run",
            "status": "OK",
            "attributes": {"openinference.span.kind": "AGENT"},
            "children": [
                {
                    "name": "openai.embeddings",
                    "kind": "function",
                    "status": "OK",
                    "attributes": {
                        "openinference.span.kind": "EMBEDDING",
                        "gen_ai.operation.name": "embeddings",
                        "gen_ai.usage.input_tokens": 6,
                    },
                    "children": [],
                }
            ],
        }
    ]
    span = traces.by_name("openai.embeddings")
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost("text-embedding-3-small", 6, 0))
    assert span.attributes["embedding.embeddings.1.embedding.text"] == "beta"
    assert json.loads(span.attributes["output.value"]) == {"embeddings": 2, "dimensions": 8}
    assert traces.runs()[0].attributes["trodo.run.total_tokens_in"] == 6


def test_azure_client(fake_openai):
    """An AzureOpenAI client's calls are spans with provider azure.ai.openai, on the deployment path."""
    client = openai.AzureOpenAI(
        azure_endpoint=fake_openai.url, api_key="k", api_version="2024-10-21", max_retries=0
    )
    with capture() as traces:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.close()
    span = traces.by_name("openai.chat.completions")
    assert (span.attributes["gen_ai.provider.name"], span.attributes["llm.provider"]) == (
        "azure.ai.openai",
        "azure",
    )
    assert "/openai/deployments/gpt-4o-mini/chat/completions" in fake_openai.requests[0].path
    assert span.attributes["gen_ai.usage.input_tokens"] == 10


async def test_async_client_in_parallel(async_openai_client, fake_openai):
    """Async create, stream and embeddings run concurrently in one run: three children, right tokens."""

    async def streamed():
        stream = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    @trodo.agent("async-bot")
    async def bot():
        return await asyncio.gather(
            async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
            streamed(),
            async_openai_client.embeddings.create(model="text-embedding-3-small", input="x"),
        )

    with capture() as traces:
        await bot()
    await async_openai_client.close()
    root = traces.runs()[0]
    children = sorted(
        (s.name, s.kind, s.status, s.parent_id == root.span_id) for s in traces.spans if s is not root
    )
    assert children == [
        ("openai.chat.completions", "llm", "OK", True),
        ("openai.chat.completions", "llm", "OK", True),
        ("openai.embeddings", "function", "OK", True),
    ]
    assert (root.attributes["trodo.run.total_tokens_in"], root.attributes["trodo.run.total_tokens_out"]) == (
        30,
        10,
    )


async def test_async_errors_and_closed_stream(async_openai_client, fake_openai):
    """Async: a 500 reaches the caller unchanged; an async stream closed early ends its span."""
    fake_openai.fail(500)
    with capture() as traces:
        with pytest.raises(openai.InternalServerError):
            await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await async_openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            break
        await stream.close()
    await async_openai_client.close()
    failed, closed = traces.spans
    assert (failed.status, failed.attributes["http.response.status_code"]) == ("ERROR", 500)
    assert (closed.status, closed.attributes["trodo.llm.stream.closed_early"]) == ("OK", True)


def test_threads_in_parallel(fake_openai):
    """Calls from several threads, each in its own run, land in their own run's tree."""
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)

    @trodo.agent("worker")
    def worker(i):
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": str(i)}]
        )

    with capture() as traces:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    client.close()
    runs = traces.runs()
    assert len(runs) == 6
    for run in runs:
        spans = traces.run_spans(run.run_id)
        assert [s.name for s in spans] == ["worker", "openai.chat.completions"]
        assert spans[1].parent_id == run.span_id
        assert run.attributes["trodo.run.total_tokens_in"] == 10


def test_capture_content_off_keeps_counts_drops_messages(fake_openai):
    """capture_content=False: model, tokens and cost stay; no message, tool schema or input/output value."""
    trodo.init(capture_content=False)
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    with capture() as traces:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL])
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.close()
    for span in traces.spans:
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        leaked = [
            k
            for k in span.attributes
            if k.startswith(("llm.input_messages", "llm.output_messages", "llm.tools"))
        ]
        assert leaked == []
        assert "input.value" not in span.attributes and "output.value" not in span.attributes
    assert traces.spans[0].attributes["gen_ai.usage.input_tokens"] == 10


def test_tracing_disabled_passes_through(openai_client):
    """With tracing off the patched methods call straight through and record nothing."""
    trodo.init(enabled=False)
    with capture() as traces:
        reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from the fake server."
    assert traces.spans == []


def test_responses_stream_helper(openai_client, fake_openai):
    """responses.stream(): one openai.responses span with the streamed text and the final usage."""
    fake_openai.reply("Helper says hi.", usage=(9, 4))
    with capture() as traces:
        with openai_client.responses.stream(model="gpt-4.1", input="Hello") as stream:
            final = stream.get_final_response()
    assert final.output_text == "Helper says hi."
    span = traces.by_name("openai.responses")
    assert (span.status, span.attributes["gen_ai.usage.output_tokens"]) == ("OK", 4)
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Helper says hi."}]


async def test_async_with_raw_response(async_openai_client, fake_openai):
    """Async with_raw_response: the raw response is returned; the span has the parsed usage."""
    fake_openai.reply("raw async", usage=(6, 2))
    with capture() as traces:
        raw = await async_openai_client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert raw.parse().choices[0].message.content == "raw async"
    await async_openai_client.close()
    assert traces.by_name("openai.chat.completions").attributes["gen_ai.usage.input_tokens"] == 6
