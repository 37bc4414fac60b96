"""Interop with a real backend: provider SDK spans read back from Arize Phoenix carry messages it understands."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

import trodo_trace as trodo
from trodo_trace.testing import FakeAnthropic, FakeOpenAI, capture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_phoenix import PROJECT, _phoenix_spans

pytestmark = pytest.mark.interop


def _flat(value, prefix=""):
    """Phoenix's attributes as dotted keys, whether it returns them nested (lists of messages) or flat."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and not all(isinstance(v, (str, int, float, bool)) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(_flat(item, f"{prefix}.{key}" if prefix else key))
    return flat


def test_provider_llm_spans_in_phoenix(phoenix, monkeypatch):
    """A run with an OpenAI chat call, a tool call and an Anthropic call: Phoenix reads LLM spans with
    their input and output messages, tool calls, tool schemas and token counts."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={PROJECT}")
    trodo.init(endpoint=phoenix["http"], service_name="interop-providers", schedule_delay_ms=50)
    with FakeOpenAI() as fake_openai, FakeAnthropic() as fake_anthropic, capture() as local:
        fake_openai.reply(
            None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=(50, 12)
        )
        fake_anthropic.reply("Il fait beau à Paris.", usage=(30, 8))
        oai = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
        claude = anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0)
        weather_tool = {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}},
        }

        @trodo.agent("provider-bot")
        def bot():
            first = oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=[weather_tool],
            )
            with trodo.tool("get_weather"):
                json.loads(first.choices[0].message.tool_calls[0].function.arguments)
            reply = claude.messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                system="Answer in French.",
                messages=[{"role": "user", "content": "Sunny, 21 C in Paris. Tell the user."}],
            )
            return reply.content[0].text

        assert bot() == "Il fait beau à Paris."
        oai.close()
        claude.close()
    assert trodo.flush(10.0) is True
    trace_id = local.spans[0].trace_id
    deadline = time.monotonic() + 30
    spans = []
    while len(spans) < 4 and time.monotonic() < deadline:
        spans = [s for s in _phoenix_spans(phoenix["http"], 0, 0) if s["context"]["trace_id"] == trace_id]
        time.sleep(0.3)
    kinds = {s["name"]: s["span_kind"] for s in spans}
    assert kinds == {
        "provider-bot": "AGENT",
        "openai.chat.completions": "LLM",
        "get_weather": "TOOL",
        "anthropic.messages": "LLM",
    }
    raw_chat = next(s for s in spans if s["name"] == "openai.chat.completions")["attributes"]
    chat = _flat(raw_chat)
    assert chat["llm.input_messages.0.message.role"] == "user"
    assert chat["llm.input_messages.0.message.content"] == "Weather in Paris?"
    assert chat["llm.output_messages.0.message.role"] == "assistant"
    assert chat["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "get_weather"
    assert json.loads(chat["llm.tools.0.tool.json_schema"]) == weather_tool
    assert (chat["llm.token_count.prompt"], chat["llm.token_count.completion"]) == (50, 12)
    claude_span = _flat(next(s for s in spans if s["name"] == "anthropic.messages")["attributes"])
    assert (
        claude_span["llm.input_messages.0.message.role"],
        claude_span["llm.input_messages.1.message.role"],
    ) == (
        "system",
        "user",
    )
    assert claude_span["llm.output_messages.0.message.content"] == "Il fait beau à Paris."
    assert claude_span["llm.model_name"] == "claude-haiku-4-5"
