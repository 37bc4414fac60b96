"""LiteLLM, instrumented: completion and acompletion (plain and streamed) are one LLM span each, with
the provider LiteLLM resolved, tokens, cost from trodo's pricing table and messages — and still
exactly one span (one count) with the openai and anthropic instrumentations on underneath."""

from __future__ import annotations

import gc
import json
import os
import threading
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import

import anthropic  # noqa: F401  (instrumented too: the Anthropic-format model must still be one span)
import pytest
from provider_fakes import LLM_KEYS, RUN_KEYS, cost, fake_anthropic, fake_openai, messages_of  # noqa: F401
from provider_fakes_cm import fake_mistral  # noqa: F401

import trodo_trace as trodo
from trodo_trace.integrations import providers
from trodo_trace.testing import capture

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
MISTRAL_MODEL = "mistral-small-latest"
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def litellm():
    """litellm, imported by the first test that needs it, not at collection: it is large, and a test
    process that imported it hands its memory high-water mark to the subprocesses it starts."""
    import litellm

    return litellm


@pytest.fixture(autouse=True)
def _collect_litellm_leftovers():
    """litellm leaves an unclosed event loop (and its self-pipe sockets) behind after some calls; it is
    collected here, after each test of this module, so its ResourceWarning never lands in another test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _llm(attributes: dict) -> dict:
    return {k: attributes[k] for k in LLM_KEYS if k in attributes and k != "trodo.run.id"}


def _call(fake, model: str, **kwargs):
    import litellm

    return litellm.completion(
        model=model, messages=MESSAGES, api_base=fake.base_url, api_key="test-key", max_retries=0, **kwargs
    )


def test_openai_model_is_one_llm_span_with_openai_instrumented(fake_openai, litellm):
    """litellm.completion("openai/...") with openai's instrumentation on: one LLM span, counted once."""
    fake_openai.reply("Sunny.", usage=(50, 6))

    @trodo.agent("gateway-bot")
    def bot():
        response = _call(fake_openai, f"openai/{OPENAI_MODEL}", temperature=0.1, max_tokens=40)
        return response.choices[0].message.content

    with capture(deterministic=True) as traces:
        assert {"openai", "anthropic", "litellm"} <= providers.instrumented()
        assert bot() == "Sunny."
    expected = cost(OPENAI_MODEL, 50, 6)
    assert traces.tree(RUN_KEYS) == [
        {
            "name": "gateway-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": 50,
                "trodo.run.total_tokens_out": 6,
                "trodo.run.total_cost": pytest.approx(expected),
            },
            "children": [
                {
                    "name": "litellm.completion",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {},
                    "children": [],
                }
            ],
        }
    ]
    span = traces.by_name("litellm.completion")
    assert _llm(span.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "llm.provider": "openai",
        "gen_ai.request.model": f"openai/{OPENAI_MODEL}",
        "gen_ai.response.model": OPENAI_MODEL,
        "gen_ai.request.temperature": 0.1,
        "gen_ai.request.max_tokens": 40,
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 6,
        "llm.token_count.total": 56,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": "chatcmpl-fake",
        "trodo.llm.cost": pytest.approx(expected),
    }
    assert span.attributes["trodo.llm.litellm.model"] == OPENAI_MODEL
    assert messages_of(span.attributes) == [{"role": "user", "content": "Weather in Paris?"}]
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Sunny."}]
    assert len(fake_openai.requests) == 1


def test_anthropic_model_through_litellm_is_one_span(fake_anthropic, litellm):
    """An Anthropic-format model through LiteLLM (anthropic instrumented too): one span, provider anthropic."""
    fake_anthropic.reply("Bonjour.", usage=(70, 3))
    with capture(deterministic=True) as traces:
        response = _call(fake_anthropic, f"anthropic/{ANTHROPIC_MODEL}", max_tokens=30)
    assert response.choices[0].message.content == "Bonjour."
    assert [(s.name, s.kind) for s in traces.spans] == [("litellm.completion", "llm")]
    attributes = traces.spans[0].attributes
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.usage.input_tokens"]) == ("anthropic", 70)
    assert attributes["trodo.llm.cost"] == pytest.approx(cost(ANTHROPIC_MODEL, 70, 3))
    assert fake_anthropic.requests[0].path.endswith("/v1/messages")


def test_mistral_model_provider_name(fake_mistral, litellm):
    """A Mistral model through LiteLLM: OpenTelemetry's provider name mistral_ai."""
    with capture() as traces:
        litellm.completion(
            model=f"mistral/{MISTRAL_MODEL}",
            messages=MESSAGES,
            api_base=f"{fake_mistral.base_url}/v1",
            api_key="k",
        )
    assert traces.spans[0].attributes["gen_ai.provider.name"] == "mistral_ai"
    assert traces.spans[0].attributes["trodo.llm.cost"] == pytest.approx(cost(MISTRAL_MODEL, 10, 5))


def test_tool_calls_and_tool_schemas(fake_openai, litellm):
    """Tool definitions are llm.tools; the reply's tool calls are output tool calls."""
    fake_openai.reply(
        None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_9"}]
    )
    with capture() as traces:
        _call(fake_openai, f"openai/{OPENAI_MODEL}", tools=[TOOL])
    attributes = traces.spans[0].attributes
    assert json.loads(attributes["llm.tools.0.tool.json_schema"]) == TOOL
    output = messages_of(attributes, "output")[0]
    assert (output["tool_calls.0.tool_call.function.name"], output["tool_calls.0.tool_call.id"]) == (
        "get_weather",
        "call_9",
    )
    assert json.loads(output["tool_calls.0.tool_call.function.arguments"]) == {"city": "Paris"}
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_stream_with_usage(fake_openai, litellm):
    """stream=True with include_usage: chunks reach the caller; the span has text, tokens, cost and TTFT."""
    fake_openai.reply("It is sunny in Paris today.", usage=(21, 7))
    with capture() as traces:
        stream = _call(
            fake_openai, f"openai/{OPENAI_MODEL}", stream=True, stream_options={"include_usage": True}
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "It is sunny in Paris today."
    [span] = traces.spans
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (
        21,
        7,
    )
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost(OPENAI_MODEL, 21, 7))
    assert span.attributes["trodo.llm.time_to_first_token_ms"] > 0
    assert messages_of(span.attributes, "output")[0]["content"] == "It is sunny in Paris today."


async def test_acompletion_plain_and_streamed(fake_openai, fake_anthropic, litellm):
    """acompletion (plain and stream=True): one span each under the agent; rollups count each once."""
    fake_openai.reply("one", usage=(11, 1))
    fake_anthropic.reply("two", usage=(12, 2))

    @trodo.agent("async-gateway")
    async def bot():
        first = await litellm.acompletion(
            model=f"openai/{OPENAI_MODEL}", messages=MESSAGES, api_base=fake_openai.base_url, api_key="k"
        )
        stream = await litellm.acompletion(
            model=f"anthropic/{ANTHROPIC_MODEL}",
            messages=MESSAGES,
            api_base=fake_anthropic.base_url,
            api_key="k",
            stream=True,
            stream_options={"include_usage": True},
        )
        second = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        return first.choices[0].message.content, second

    with capture(deterministic=True) as traces:
        assert await bot() == ("one", "two")
    assert traces.tree() == [
        {
            "name": "async-gateway",
            "kind": "run",
            "status": "OK",
            "children": [
                {"name": "litellm.completion", "kind": "llm", "status": "OK", "children": []},
                {"name": "litellm.completion", "kind": "llm", "status": "OK", "children": []},
            ],
        }
    ]
    root = traces.runs()[0].attributes
    assert (root["trodo.run.total_tokens_in"], root["trodo.run.total_tokens_out"]) == (23, 3)
    assert root["trodo.run.total_cost"] == pytest.approx(
        cost(OPENAI_MODEL, 11, 1) + cost(ANTHROPIC_MODEL, 12, 2)
    )


def test_rate_limit_reaches_the_caller_unchanged(fake_openai, litellm):
    """A 429: LiteLLM's RateLimitError reaches the caller; the span is ERROR with error.type and status."""
    fake_openai.fail(429, "slow down", retry_after=0)
    with capture() as traces:
        with pytest.raises(litellm.RateLimitError) as caught:
            _call(fake_openai, f"openai/{OPENAI_MODEL}")
    assert caught.value.status_code == 429
    [span] = traces.spans
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        "litellm.exceptions.RateLimitError",
        429,
    )


def test_counted_once_inside_llm_decorator(fake_openai, litellm):
    """litellm.completion inside @trodo.llm merges into the decorator's span: one LLM row, tokens once."""
    fake_openai.reply("hi", usage=(40, 4))

    @trodo.llm(model=OPENAI_MODEL, provider="openai")
    def complete():
        return _call(fake_openai, f"openai/{OPENAI_MODEL}")

    @trodo.agent("bot")
    def bot():
        return complete().choices[0].message.content

    with capture() as traces:
        assert bot() == "hi"
    assert [(s.name, s.kind) for s in traces.spans] == [("complete", "llm"), ("bot", "run")]
    root = traces.runs()[0].attributes
    assert (root["trodo.run.total_tokens_in"], root["trodo.run.total_tokens_out"]) == (40, 4)


def test_capture_content_off_drops_messages(fake_openai, litellm):
    """capture_content=False: tokens stay, no message, tool schema or input/output value."""
    trodo.init(capture_content=False)
    with capture() as traces:
        _call(fake_openai, f"openai/{OPENAI_MODEL}", tools=[TOOL])
    attributes = traces.spans[0].attributes
    assert attributes["gen_ai.usage.input_tokens"] == 10
    assert [
        k
        for k in attributes
        if k.startswith(("llm.input_messages", "llm.output_messages", "llm.tools", "input.", "output."))
    ] == []


def test_litellm_leaves_only_its_idle_logging_threads(fake_openai, litellm):
    """After calls, the only threads LiteLLM leaves are its idle logging pool; nothing unraisable is pending."""
    before = set(threading.enumerate())
    with capture():
        _call(fake_openai, f"openai/{OPENAI_MODEL}")
    gc.collect()
    # The fake server's own per-connection handler threads ("process_request_thread") live as long as
    # LiteLLM's HTTP pool keeps the connection open; they belong to the test server, not to LiteLLM.
    new = [
        t.name
        for t in set(threading.enumerate()) - before
        if t.name != "trodo-span-export" and not t.name.endswith("(process_request_thread)")
    ]
    assert all(name.startswith("litellm-logging") for name in new), new
