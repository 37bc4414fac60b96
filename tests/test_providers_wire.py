"""Provider spans on the wire: what reaches an OTLP collector, with content captured and without."""

from __future__ import annotations

import anthropic
import openai
import pytest
from otlp_receiver import OtlpReceiver
from provider_fakes import fake_anthropic, fake_openai  # noqa: F401

import trodo_trace as trodo
from trodo_trace.testing import Capture

KEYS = ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


def _agent(fake_openai, fake_anthropic):
    fake_openai.reply("openai-CONTENT-2 reply", usage=(12, 3))
    fake_anthropic.reply("anthropic-CONTENT-4 reply", usage=(20, 4))
    oai = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    claude = anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0)

    @trodo.agent("wire-bot")
    def bot(question):
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "system-CONTENT-1"},
                {"role": "user", "content": question},
            ],
            tools=[{"type": "function", "function": {"name": "tool_CONTENT_5", "parameters": {}}}],
        )
        with claude.messages.stream(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": question}]
        ) as stream:
            stream.until_done()
        return "done"

    return bot, (oai, claude)


def _tree(receiver):
    return Capture().tree(KEYS, spans=receiver.spans())


EXPECTED = [
    {
        "name": "wire-bot",
        "kind": "run",
        "status": "OK",
        "attributes": {},
        "children": [
            {
                "name": "openai.chat.completions",
                "kind": "llm",
                "status": "OK",
                "attributes": {
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 12,
                    "gen_ai.usage.output_tokens": 3,
                },
                "children": [],
            },
            {
                "name": "anthropic.messages",
                "kind": "llm",
                "status": "OK",
                "attributes": {
                    "gen_ai.request.model": "claude-haiku-4-5",
                    "gen_ai.usage.input_tokens": 20,
                    "gen_ai.usage.output_tokens": 4,
                },
                "children": [],
            },
        ],
    }
]


def test_capture_content_off_on_the_wire(receiver, fake_openai, fake_anthropic):
    """capture_content=False: the collector gets the tree, models and tokens, and no byte of any message."""
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20, capture_content=False)
    bot, clients = _agent(fake_openai, fake_anthropic)
    bot("question-CONTENT-3")
    assert trodo.flush(5.0)
    for client in clients:
        client.close()
    payload = b"".join(r.body for r in receiver.requests)
    assert b"CONTENT" not in payload
    assert _tree(receiver) == EXPECTED


def test_content_on_the_wire(receiver, fake_openai, fake_anthropic):
    """With content captured, the collector gets the prompt and reply messages as OpenInference attributes."""
    trodo.init(endpoint=receiver.url, schedule_delay_ms=20)
    bot, clients = _agent(fake_openai, fake_anthropic)
    bot("question-CONTENT-3")
    assert trodo.flush(5.0)
    for client in clients:
        client.close()
    assert _tree(receiver) == EXPECTED
    spans = {s.name: s.attributes for s in receiver.spans()}
    assert spans["openai.chat.completions"]["llm.input_messages.1.message.content"] == "question-CONTENT-3"
    assert (
        spans["openai.chat.completions"]["llm.output_messages.0.message.content"] == "openai-CONTENT-2 reply"
    )
    assert "tool_CONTENT_5" in spans["openai.chat.completions"]["llm.tools.0.tool.json_schema"]
    assert spans["anthropic.messages"]["llm.output_messages.0.message.content"] == "anthropic-CONTENT-4 reply"
