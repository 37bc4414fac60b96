"""The anthropic SDK, instrumented: messages.create (plain, streamed), the messages.stream helper,
tool use, prompt caching, errors, content capture, and the SDK's own spans — against the fake server."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json

import anthropic
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from provider_fakes import (  # noqa: F401
    LLM_KEYS,
    RUN_KEYS,
    anthropic_client,
    async_anthropic_client,
    cost,
    fake_anthropic,
    messages_of,
)

import trodo_trace as trodo
from trodo_trace.integrations import providers
from trodo_trace.testing import capture

MODEL = "claude-sonnet-4-6"
#: anthropic 2.x starts OpenTelemetry spans of its own (the open_telemetry client option); 0.x does not
sdk_spans = pytest.mark.skipif(
    "start_api_call_span" not in vars(importlib.import_module("anthropic._base_client")),
    reason="this anthropic release has no spans of its own",
)
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _llm(attributes: dict) -> dict:
    return {k: attributes[k] for k in LLM_KEYS if k in attributes and k != "trodo.run.id"}


def test_message_is_an_llm_span_with_cache_usage_and_cost(anthropic_client, fake_anthropic):
    """messages.create in an agent: one LLM child; prompt-cache reads and writes are counted and priced."""
    fake_anthropic.reply("Sunny.", usage=(1300, 10), cached_tokens=1000, cache_write_tokens=200)

    @trodo.agent("weather-bot")
    def bot():
        message = anthropic_client.messages.create(
            model=MODEL, max_tokens=100, system="Be terse.", messages=MESSAGES, tools=[TOOL]
        )
        return message.content[0].text

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    expected_cost = cost(MODEL, 1300, 10, cache_read=1000, cache_write=200)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 1300,
                "trodo.run.total_tokens_out": 10,
                "trodo.run.total_cost": pytest.approx(expected_cost),
            },
            "children": [
                {
                    "name": "anthropic.messages",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {},
                    "children": [],
                }
            ],
        }
    ]
    span = traces.by_name("anthropic.messages")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "llm.provider": "anthropic",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.usage.input_tokens": 1300,
        "gen_ai.usage.output_tokens": 10,
        "llm.token_count.total": 1310,
        "llm.token_count.prompt_details.cache_read": 1000,
        "llm.token_count.prompt_details.cache_write": 200,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.response.id": "msg_fake",
        "trodo.llm.cost": pytest.approx(expected_cost),
    }
    assert (
        span.attributes["gen_ai.usage.cache_read_input_tokens"],
        span.attributes["gen_ai.usage.cache_creation_input_tokens"],
    ) == (1000, 200)
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"]) == TOOL
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {"model": MODEL, "max_tokens": 100}
    assert json.loads(span.attributes["output.value"]) == {"role": "assistant", "content": "Sunny."}


def test_tool_use_round_trip(anthropic_client, fake_anthropic):
    """A tool_use reply is an output tool call; the follow-up prompt's tool_use and tool_result are kept."""
    fake_anthropic.reply(
        "Let me check.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "toolu_1"}]
    )
    fake_anthropic.reply("18C in Paris.")
    with capture() as traces:
        first = anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, tools=[TOOL])
        tool_use = first.content[1]
        anthropic_client.messages.create(
            model=MODEL,
            max_tokens=100,
            tools=[TOOL],
            messages=[
                *MESSAGES,
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C"}],
                },
            ],
        )
    asked, answered = traces.spans
    assert messages_of(asked.attributes, "output") == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls.0.tool_call.function.name": "get_weather",
            "tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
            "tool_calls.0.tool_call.id": "toolu_1",
        }
    ]
    assert asked.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    history = messages_of(answered.attributes)
    assert history[1]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(history[2]["content"])["tool_use_id"] == "toolu_1"


def test_create_stream_true(anthropic_client, fake_anthropic):
    """stream=True: every raw event reaches the caller; the span has the text, tool call, usage and TTFT."""
    fake_anthropic.reply(
        "It is sunny.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=(40, 12)
    )
    with capture() as traces:
        stream = anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
        assert traces.spans == []
        events = [event.type for event in stream]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    span = traces.by_name("anthropic.messages")
    assert span.status == "OK"
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (
        40,
        12,
    )
    assert span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    output = messages_of(span.attributes, "output")[0]
    assert output["content"] == "It is sunny."
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}
    assert span.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)


def test_stream_helper_text_stream_and_final_message(anthropic_client, fake_anthropic):
    """messages.stream(): read through text_stream and get_final_message, one span with the whole reply."""
    fake_anthropic.reply("Streaming from the helper.", usage=(22, 6))

    @trodo.agent
    def bot():
        with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        return text, final.usage.output_tokens

    with capture(deterministic=True) as traces:
        assert bot() == ("Streaming from the helper.", 6)
    assert traces.tree() == [
        {
            "name": "bot",
            "kind": "run",
            "status": "OK",
            "children": [{"name": "anthropic.messages", "kind": "llm", "status": "OK", "children": []}],
        }
    ]
    span = traces.by_name("anthropic.messages")
    assert messages_of(span.attributes, "output") == [
        {"role": "assistant", "content": "Streaming from the helper."}
    ]
    assert span.attributes["gen_ai.usage.output_tokens"] == 6
    assert traces.runs()[0].attributes["trodo.run.total_tokens_in"] == 22


def test_stream_helper_left_early(anthropic_client, fake_anthropic):
    """Leaving the stream helper's block after one event ends the span, marked closed early."""
    fake_anthropic.reply("one two three four five six seven")
    with capture() as traces:
        with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            for _event in stream:
                break
    span = traces.by_name("anthropic.messages")
    assert (span.status, span.attributes["trodo.llm.stream.closed_early"]) == ("OK", True)


def test_abandoned_raw_stream_ends_on_collection(anthropic_client):
    """A stream=True result dropped unread ends its span when collected."""
    with capture() as traces:
        stream = anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True)
        del stream
        gc.collect()
    assert traces.by_name("anthropic.messages").attributes["trodo.llm.stream.closed_early"] is True


def test_connection_dropped_mid_stream(anthropic_client, fake_anthropic):
    """A connection cut mid-stream: the error reaches the caller, the span is ERROR with what it saw."""
    fake_anthropic.reply("one two three four five six", drop_after=3)
    with capture() as traces:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's own transport error type
            for _ in anthropic_client.messages.create(
                model=MODEL, max_tokens=10, messages=MESSAGES, stream=True
            ):
                pass
    span = traces.by_name("anthropic.messages")
    assert span.status == "ERROR"
    assert messages_of(span.attributes, "output")[0]["content"] == "one two three "


@pytest.mark.parametrize(
    ("status", "error"), [(429, anthropic.RateLimitError), (500, anthropic.InternalServerError)]
)
def test_http_errors(anthropic_client, fake_anthropic, status, error):
    """An HTTP error reaches the caller unchanged; the span is ERROR with error.type and the status."""
    fake_anthropic.fail(status, retry_after=0)
    with capture() as traces:
        with pytest.raises(error) as caught:
            anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == status
    span = traces.by_name("anthropic.messages")
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        f"anthropic.{error.__name__}",
        status,
    )


def test_stream_helper_error_on_enter(anthropic_client, fake_anthropic):
    """A rate limit when the stream helper sends its request: ERROR span, the SDK's error raised."""
    fake_anthropic.fail(429, retry_after=0)
    with capture() as traces:
        with pytest.raises(anthropic.RateLimitError):
            with anthropic_client.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES):
                pass
    assert [(s.name, s.status) for s in traces.spans] == [("anthropic.messages", "ERROR")]


def test_with_raw_response(anthropic_client, fake_anthropic):
    """with_raw_response.create: the raw response is returned; the span has the parsed usage."""
    fake_anthropic.reply("raw", usage=(7, 2))
    with capture() as traces:
        raw = anthropic_client.messages.with_raw_response.create(
            model=MODEL, max_tokens=10, messages=MESSAGES
        )
        assert raw.parse().content[0].text == "raw"
    span = traces.by_name("anthropic.messages")
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["http.response.status_code"]) == (
        7,
        200,
    )


async def test_async_create_and_stream_helper_in_parallel(async_anthropic_client, fake_anthropic):
    """Async create, stream=True and the async stream helper run concurrently; three children, one run."""

    async def helper():
        async with async_anthropic_client.messages.stream(
            model=MODEL, max_tokens=10, messages=MESSAGES
        ) as stream:
            return "".join([text async for text in stream.text_stream])

    async def raw_stream():
        stream = await async_anthropic_client.messages.create(
            model=MODEL, max_tokens=10, messages=MESSAGES, stream=True
        )
        return [event.type async for event in stream][-1]

    @trodo.agent("async-bot")
    async def bot():
        return await asyncio.gather(
            async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES),
            helper(),
            raw_stream(),
        )

    with capture() as traces:
        message, text, last = await bot()
    await async_anthropic_client.close()
    assert (message.content[0].text, text, last) == ("Hello from the fake server.",) * 2 + ("message_stop",)
    root = traces.runs()[0]
    children = [(s.name, s.status, s.parent_id == root.span_id) for s in traces.spans if s is not root]
    assert children == [("anthropic.messages", "OK", True)] * 3
    assert root.attributes["trodo.run.total_tokens_out"] == 15


async def test_async_error(async_anthropic_client, fake_anthropic):
    """Async: a 529 overloaded error reaches the caller; the span is ERROR with the status."""
    fake_anthropic.fail(529)
    with capture() as traces:
        with pytest.raises(anthropic.APIStatusError):
            await async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    await async_anthropic_client.close()
    assert traces.by_name("anthropic.messages").attributes["http.response.status_code"] == 529


@sdk_spans
def test_sdk_own_span_is_not_started_while_traced(fake_anthropic):
    """The SDK's own anthropic.messages.create OpenTelemetry span is left out while trodo traces the call,
    and comes back when the instrumentation is removed."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = anthropic.Anthropic(
        base_url=fake_anthropic.base_url,
        api_key="k",
        max_retries=0,
        open_telemetry={"tracer_provider": provider},
    )
    with capture() as traces:
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        with client.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
            stream.get_final_message()
    assert [s.name for s in traces.spans] == ["anthropic.messages", "anthropic.messages"]
    assert exporter.get_finished_spans() == ()
    providers.uninstrument("anthropic")
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    client.close()
    assert [s.name for s in exporter.get_finished_spans()] == ["anthropic.messages.create"]


@sdk_spans
def test_dual_export_shows_the_call_once(fake_anthropic):
    """With dual export to the app's provider, the app's backend gets the call once (trodo's span)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trodo.init(tracer_provider=provider)
    client = anthropic.Anthropic(
        base_url=fake_anthropic.base_url,
        api_key="k",
        max_retries=0,
        open_telemetry={"tracer_provider": provider},
    )

    @trodo.agent
    def bot():
        return client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)

    with capture() as traces:
        bot()
    trodo.flush()
    client.close()
    assert sorted(s.name for s in traces.spans) == ["anthropic.messages", "bot"]
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["anthropic.messages", "bot"]


def test_capture_content_off(fake_anthropic):
    """capture_content=False: tokens and cost stay, no messages, tool schemas or values."""
    trodo.init(capture_content=False)
    client = anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0)
    with capture() as traces:
        client.messages.create(
            model=MODEL, max_tokens=10, system="secret system", messages=MESSAGES, tools=[TOOL]
        )
        with client.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
            stream.until_done()
    client.close()
    for span in traces.spans:
        assert span.attributes["gen_ai.usage.input_tokens"] == 10
        content = [
            k
            for k in span.attributes
            if k.startswith(("llm.input_messages", "llm.output_messages", "llm.tools"))
        ]
        assert (
            content == [] and "input.value" not in span.attributes and "output.value" not in span.attributes
        )
