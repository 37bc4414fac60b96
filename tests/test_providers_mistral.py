"""The mistralai SDK (3.x, mistralai.client.Mistral), instrumented: chat.complete, chat.stream,
embeddings.create, sync and async, tool calls, errors, content capture and counted-once — against
the fake Mistral server."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest
from mistralai.client import Mistral, errors
from provider_fakes import LLM_KEYS, RUN_KEYS, cost, messages_of
from provider_fakes_cm import fake_mistral, mistral_client  # noqa: F401

import trodo_trace as trodo
from trodo_trace.testing import capture

MODEL = "mistral-large-latest"
SMALL_MODEL = "mistral-small-latest"
EMBED_MODEL = "mistral-embed"
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


def test_complete_is_an_llm_span_of_the_run(mistral_client, fake_mistral):
    """chat.complete in an agent: one LLM child with model, provider, parameters, tokens, cost, messages."""
    fake_mistral.reply("Sunny.", usage=(200, 9))

    @trodo.agent("weather-bot")
    def bot():
        response = mistral_client.chat.complete(
            model=MODEL,
            messages=[{"role": "system", "content": "Be terse."}, *MESSAGES],
            tools=[TOOL],
            temperature=0.2,
            max_tokens=64,
        )
        return response.choices[0].message.content

    with capture(deterministic=True) as traces:
        assert bot() == "Sunny."
    expected = cost(MODEL, 200, 9)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "weather-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 200,
                "trodo.run.total_tokens_out": 9,
                "trodo.run.total_cost": pytest.approx(expected),
            },
            "children": [
                {"name": "mistral.chat", "kind": "llm", "status": "OK", "attributes": {}, "children": []}
            ],
        }
    ]
    span = traces.by_name("mistral.chat")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mistral_ai",
        "llm.provider": "mistralai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.usage.input_tokens": 200,
        "gen_ai.usage.output_tokens": 9,
        "llm.token_count.total": 209,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": "cmpl-fake",
        "trodo.llm.cost": pytest.approx(expected),
    }
    assert json.loads(span.attributes["llm.invocation_parameters"]) == {
        "model": MODEL,
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert messages_of(span.attributes) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert json.loads(span.attributes["llm.tools.0.tool.json_schema"]) == TOOL


def test_tool_calls_round_trip(mistral_client, fake_mistral):
    """Tool calls in the reply are output tool calls; the follow-up's assistant tool call and tool result are kept."""
    fake_mistral.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}]
    )
    fake_mistral.reply("18C in Paris.")
    with capture() as traces:
        first = mistral_client.chat.complete(model=SMALL_MODEL, messages=MESSAGES, tools=[TOOL])
        tool_call = first.choices[0].message.tool_calls[0]
        mistral_client.chat.complete(
            model=SMALL_MODEL,
            tools=[TOOL],
            messages=[
                *MESSAGES,
                first.choices[0].message,
                {"role": "tool", "tool_call_id": tool_call.id, "name": "get_weather", "content": "18C"},
            ],
        )
    asked, answered = traces.spans
    output = messages_of(asked.attributes, "output")[0]
    assert (output["tool_calls.0.tool_call.function.name"], output["tool_calls.0.tool_call.id"]) == (
        "get_weather",
        "abc123def",
    )
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}
    assert asked.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    history = messages_of(answered.attributes)
    assert history[1]["tool_calls.0.tool_call.function.name"] == "get_weather"
    assert (history[2]["role"], history[2]["tool_call_id"], history[2]["content"]) == (
        "tool",
        "abc123def",
        "18C",
    )


def test_stream_text_tool_calls_usage_and_ttft(mistral_client, fake_mistral):
    """chat.stream: events reach the caller; the span has the text, tool call, usage of the last chunk, TTFT."""
    fake_mistral.reply("It is sunny in Paris today.", usage=(33, 8))
    fake_mistral.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=(34, 10)
    )
    with capture() as traces:
        with mistral_client.chat.stream(model=SMALL_MODEL, messages=MESSAGES) as stream:
            texts = [event.data.choices[0].delta.content for event in stream]
        list(mistral_client.chat.stream(model=SMALL_MODEL, messages=MESSAGES, tools=[TOOL]))
    assert "".join(t for t in texts if isinstance(t, str)) == "It is sunny in Paris today."
    text_span, tool_span = traces.spans
    assert (
        text_span.attributes["gen_ai.usage.input_tokens"],
        text_span.attributes["gen_ai.usage.output_tokens"],
    ) == (33, 8)
    assert text_span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert text_span.attributes["trodo.llm.cost"] == pytest.approx(cost(SMALL_MODEL, 33, 8))
    assert messages_of(text_span.attributes, "output") == [
        {"role": "assistant", "content": "It is sunny in Paris today."}
    ]
    output = messages_of(tool_span.attributes, "output")[0]
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}
    assert tool_span.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_embeddings_span(mistral_client, fake_mistral):
    """embeddings.create: kind function, OpenInference EMBEDDING, inputs, input tokens and cost."""
    fake_mistral.reply(usage=(14, 0))
    with capture() as traces:
        response = mistral_client.embeddings.create(model=EMBED_MODEL, inputs=["a cat", "a dog"])
    assert len(response.data) == 2
    span = traces.by_name("mistral.embeddings")
    assert (span.kind, span.attributes["openinference.span.kind"]) == ("function", "EMBEDDING")
    assert [span.attributes[f"embedding.embeddings.{i}.embedding.text"] for i in (0, 1)] == ["a cat", "a dog"]
    assert (
        span.attributes["gen_ai.usage.input_tokens"] == 14
        and "gen_ai.usage.output_tokens" not in span.attributes
    )
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost(EMBED_MODEL, 14, 0))


@pytest.mark.parametrize("status", [429, 500])
def test_http_errors_reach_the_caller_unchanged(mistral_client, fake_mistral, status):
    """An HTTP error: the SDK's SDKError reaches the caller; the span is ERROR with error.type and status."""
    fake_mistral.fail(status, "slow down")
    with capture() as traces:
        with pytest.raises(errors.SDKError) as caught:
            mistral_client.chat.complete(model=SMALL_MODEL, messages=MESSAGES)
    assert caught.value.status_code == status
    span = traces.by_name("mistral.chat")
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        "mistralai.client.errors.sdkerror.SDKError",
        status,
    )


def test_stream_errors_dropped_and_abandoned(mistral_client, fake_mistral):
    """A 429 on a stream, a connection dropped mid-stream, and a stream abandoned after one event."""
    fake_mistral.fail(429)
    fake_mistral.reply("one two three four five six", drop_after=2)
    with capture() as traces:
        with pytest.raises(errors.SDKError):
            mistral_client.chat.stream(model=SMALL_MODEL, messages=MESSAGES)
        received = []
        with pytest.raises(Exception) as dropped:
            for event in mistral_client.chat.stream(model=SMALL_MODEL, messages=MESSAGES):
                received.append(event)
        stream = mistral_client.chat.stream(model=SMALL_MODEL, messages=MESSAGES)
        next(iter(stream))
        del stream
        gc.collect()
    limited, cut, abandoned = traces.spans
    assert (limited.status, limited.attributes["http.response.status_code"]) == ("ERROR", 429)
    assert cut.status == "ERROR" and cut.attributes["error.type"].endswith(type(dropped.value).__name__)
    assert len(received) == 2
    assert messages_of(cut.attributes, "output")[0]["content"] == "one two three "
    assert abandoned.attributes["trodo.llm.stream.closed_early"] is True


async def test_async_methods(mistral_client, fake_mistral):
    """complete_async, stream_async and create_async in parallel: one span each under the agent."""

    @trodo.agent("async-bot")
    async def bot():
        async def streamed():
            stream = await mistral_client.chat.stream_async(model=SMALL_MODEL, messages=MESSAGES)
            return [event async for event in stream]

        return await asyncio.gather(
            mistral_client.chat.complete_async(model=SMALL_MODEL, messages=MESSAGES),
            streamed(),
            mistral_client.embeddings.create_async(model=EMBED_MODEL, inputs=["q"]),
        )

    with capture() as traces:
        await bot()
    root = traces.runs()[0]
    assert sorted((s.name, s.kind, s.status) for s in traces.spans if s.parent_id == root.span_id) == [
        ("mistral.chat", "llm", "OK"),
        ("mistral.chat", "llm", "OK"),
        ("mistral.embeddings", "function", "OK"),
    ]
    assert root.attributes["trodo.run.total_tokens_in"] == 30


def test_capture_content_off_keeps_counts_drops_messages(fake_mistral):
    """capture_content=False: model and tokens stay; no message, tool schema, text or input/output value."""
    trodo.init(capture_content=False)
    client = Mistral(api_key="k", server_url=fake_mistral.base_url)
    with capture() as traces:
        client.chat.complete(model=SMALL_MODEL, messages=MESSAGES, tools=[TOOL])
        list(client.chat.stream(model=SMALL_MODEL, messages=MESSAGES))
        client.embeddings.create(model=EMBED_MODEL, inputs=["secret"])
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
        ]
        assert leaked == [], span.name
        assert span.attributes["gen_ai.usage.input_tokens"] == 10


def test_counted_once_inside_llm_decorator(mistral_client, fake_mistral):
    """chat.complete inside @trodo.llm merges into the decorator's span: one LLM row, tokens counted once."""
    fake_mistral.reply("hi", usage=(40, 4))

    @trodo.llm(model=SMALL_MODEL, provider="mistral_ai")
    def complete(prompt):
        return mistral_client.chat.complete(model=SMALL_MODEL, messages=[{"role": "user", "content": prompt}])

    @trodo.agent("bot")
    def bot():
        return complete("hello").choices[0].message.content

    with capture(deterministic=True) as traces:
        assert bot() == "hi"
    assert [(s.name, s.kind) for s in traces.spans] == [("complete", "llm"), ("bot", "run")]
    root = traces.runs()[0].attributes
    assert (root["trodo.run.total_tokens_in"], root["trodo.run.total_tokens_out"]) == (40, 4)
    assert root["trodo.run.total_cost"] == pytest.approx(cost(SMALL_MODEL, 40, 4))


def test_sdk_imported_after_tracing_started_is_instrumented():
    """mistralai is a namespace package: importing mistralai.client after init() still patches it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import trodo_trace as trodo\n"
        "from trodo_trace.testing import FakeMistral, capture\n"
        "trodo.init()\n"
        "assert 'mistralai.client' not in sys.modules\n"
        "from mistralai.client import Mistral\n"
        "with FakeMistral() as fake, capture() as traces:\n"
        "    Mistral(api_key='k', server_url=fake.base_url).chat.complete(\n"
        "        model='mistral-small-latest', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "print([span.name for span in traces.spans])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['mistral.chat']"


def test_typed_responses_are_read_as_their_fields_with_the_same_values():
    """The cheap reader of pydantic responses: fields, extra fields and nested models become dicts
    holding the model's own values (a missing name is then a dict miss); other values pass as they are."""

    from trodo_trace._internal.core.extract import extract_usage
    from trodo_trace.integrations.providers._fields import plain

    response = _typed_response()
    view = plain(response, 2)
    assert view["id"] == "r-1" and view["usage"]["extra_count"] == 4
    assert view["usage"]["prompt_tokens"] == 7
    message = view["choices"][0]["message"]  # a list's items count at the list's own depth
    assert message["content"] == "Hi" and message["tool_calls"] is response.choices[0].message.tool_calls
    assert extract_usage(view) == extract_usage(response) == (7, 3, None, None, None)
    assert plain({"a": 1}) == {"a": 1} and plain("text") == "text" and plain(None) is None


def test_direct_field_reads_match_the_generic_readers():
    """``fields`` / ``field`` / ``reader`` read a typed response's own values (extra fields too)
    without copying it, and ``_shape.usage`` / ``_shape.chat_response`` read it as the generic
    ``extract_usage`` / ``plain`` path did, cached and reasoning token details included."""
    from litellm.types.utils import ModelResponse
    from mistralai.client.models import UsageInfo

    from trodo_trace._internal.core.extract import extract_usage
    from trodo_trace.integrations.providers import _shape
    from trodo_trace.integrations.providers._fields import field, fields, plain, reader

    response = _typed_response()
    assert fields(response) is response.__dict__  # no extra fields: the model's own dict
    assert fields(response.usage)["extra_count"] == 4 and field(response.usage, "prompt_tokens") == 7
    assert field(response, "no_such_field") is None and fields(None) == {} and fields("text") is None
    assert reader({"a": 1})("a") == 1 and reader(response)("id") == "r-1"
    assert _shape.usage(response.usage) == extract_usage(plain(response)) == (7, 3, None, None, None)
    assert _shape.usage(UsageInfo(prompt_tokens=None, completion_tokens=None, total_tokens=None)) is None
    litellm_response = ModelResponse(
        model="gpt-4o-mini",
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
        usage={
            "prompt_tokens": 9,
            "completion_tokens": 5,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    )
    assert _shape.usage(field(litellm_response, "usage")) == extract_usage(plain(litellm_response, 0))
    assert _shape.usage(field(litellm_response, "usage")) == (9, 5, 4, None, 2)
    assert _shape.usage({"input_tokens": 2, "output_tokens": 1}) == (2, 1, None, None, None)  # other shapes


def _typed_response() -> Any:
    """A mistralai ``ChatCompletionResponse`` with an extra usage field, as the SDK parses one."""
    from mistralai.client.models import ChatCompletionResponse

    return ChatCompletionResponse.model_validate(
        {
            "id": "r-1",
            "object": "chat.completion",
            "model": SMALL_MODEL,
            "created": 1,
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "extra_count": 4},
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}
            ],
        }
    )
