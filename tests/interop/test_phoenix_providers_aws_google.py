"""Interop with a real backend: Amazon Bedrock and Gemini spans read back from Arize Phoenix are LLM
spans with messages, tool calls and token counts it understands."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from google import genai

import trodo_trace as trodo
from trodo_trace.testing import FakeBedrock, FakeGemini, capture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_phoenix import PROJECT, _phoenix_spans
from test_phoenix_providers import _flat

pytestmark = pytest.mark.interop

TOOL_SPEC = {
    "name": "get_weather",
    "description": "Weather of a city",
    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def test_bedrock_and_gemini_llm_spans_in_phoenix(phoenix, monkeypatch):
    """A run with a Bedrock converse call asking for a tool, the tool, and a Gemini call: Phoenix reads
    both as LLM spans with input and output messages, the tool call, its schema and the token counts."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={PROJECT}")
    trodo.init(endpoint=phoenix["http"], service_name="interop-aws-google", schedule_delay_ms=50)
    with FakeBedrock() as fake_bedrock, FakeGemini() as fake_gemini, capture() as local:
        fake_bedrock.reply(
            None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=(40, 9)
        )
        fake_gemini.reply("Il fait beau à Paris.", usage=(30, 8))
        bedrock = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=fake_bedrock.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1}),
        )
        gemini = genai.Client(api_key="k", http_options={"base_url": fake_gemini.base_url})

        @trodo.agent("aws-google-bot")
        def bot():
            first = bedrock.converse(
                modelId="us.amazon.nova-lite-v1:0",
                messages=[{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
                toolConfig={"tools": [{"toolSpec": TOOL_SPEC}]},
            )
            with trodo.tool("get_weather"):
                assert first["output"]["message"]["content"][0]["toolUse"]["input"] == {"city": "Paris"}
            return gemini.models.generate_content(
                model="gemini-2.5-flash",
                contents="Sunny, 21 C in Paris. Tell the user.",
                config={"system_instruction": "Answer in French."},
            ).text

        assert bot() == "Il fait beau à Paris."
        bedrock.close()
    assert trodo.flush(10.0) is True
    trace_id = local.spans[0].trace_id
    deadline = time.monotonic() + 30
    spans = []
    while len(spans) < 4 and time.monotonic() < deadline:
        spans = [s for s in _phoenix_spans(phoenix["http"], 0, 0) if s["context"]["trace_id"] == trace_id]
        time.sleep(0.3)
    assert {s["name"]: s["span_kind"] for s in spans} == {
        "aws-google-bot": "AGENT",
        "bedrock.converse": "LLM",
        "get_weather": "TOOL",
        "gemini.generate_content": "LLM",
    }
    converse = _flat(next(s for s in spans if s["name"] == "bedrock.converse")["attributes"])
    assert converse["llm.input_messages.0.message.content"] == "Weather in Paris?"
    assert converse["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "get_weather"
    assert '"get_weather"' in converse["llm.tools.0.tool.json_schema"]
    assert (converse["llm.token_count.prompt"], converse["llm.token_count.completion"]) == (40, 9)
    assert converse["llm.provider"] == "aws"
    generated = _flat(next(s for s in spans if s["name"] == "gemini.generate_content")["attributes"])
    assert (
        generated["llm.input_messages.0.message.role"],
        generated["llm.input_messages.1.message.role"],
    ) == ("system", "user")
    assert generated["llm.output_messages.0.message.content"] == "Il fait beau à Paris."
    assert (generated["llm.model_name"], generated["llm.provider"]) == ("gemini-2.5-flash", "google")
