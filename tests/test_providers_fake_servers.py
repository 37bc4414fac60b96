"""The fake provider servers of the test kit answer the real SDKs offline: JSON, streams, tool calls,
errors with their bodies, and a record of the requests."""

from __future__ import annotations

import anthropic
import openai
import pytest

import trodo_trace as trodo
from trodo_trace.testing import FakeAnthropic, FakeOpenAI


@pytest.fixture(autouse=True)
def _untraced():
    """These tests exercise the servers alone."""
    trodo.init(instrument=False)


def test_openai_fake_answers_chat_stream_and_records_requests():
    """FakeOpenAI: a scripted chat reply, a default streamed one, and the requests it received."""
    with FakeOpenAI() as fake:
        fake.reply("scripted", usage=(7, 1))
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        client.close()
    assert (reply.choices[0].message.content, reply.usage.prompt_tokens) == ("scripted", 7)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello from the fake server."
    )
    assert chunks[-1].usage.completion_tokens == 5
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2
    assert fake.requests[0].headers["authorization"] == "Bearer k"
    assert fake.requests[1].body["stream"] is True


def test_openai_fake_errors_and_embeddings():
    """FakeOpenAI: a 429 with retry-after raises the SDK's RateLimitError; embeddings decode."""
    with FakeOpenAI() as fake:
        fake.fail(429, "slow down", retry_after=3)
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        vectors = client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b", "c"], dimensions=4
        )
        client.close()
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["message"] == "slow down"
    assert [len(item.embedding) for item in vectors.data] == [4, 4, 4]


def test_anthropic_fake_tool_use_and_stream():
    """FakeAnthropic: a tool_use reply, and a streamed reply the stream helper reassembles."""
    with FakeAnthropic() as fake:
        fake.reply(None, tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}])
        client = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0)
        message = client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = stream.get_final_message()
        client.close()
    assert (message.stop_reason, message.content[0].name, message.content[0].input) == (
        "tool_use",
        "lookup",
        {"q": "x"},
    )
    assert (final.content[0].text, final.usage.output_tokens) == ("Hello from the fake server.", 5)


def test_anthropic_fake_drops_a_stream():
    """FakeAnthropic: drop_after cuts the connection mid-stream; the SDK raises."""
    with FakeAnthropic() as fake:
        fake.reply("a b c d e f g", drop_after=2)
        client = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0)
        seen = []
        with pytest.raises(Exception):  # noqa: B017 - the SDK's own transport error
            for event in client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            ):
                seen.append(event.type)
        client.close()
    assert seen == ["message_start", "content_block_start"]
