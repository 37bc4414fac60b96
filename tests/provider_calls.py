"""One chat call per instrumented provider, each against its fake server — the list the "one run
calls them all" tests walk. Another provider is one more ``ProviderCall`` entry in ``CALLS``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trodo_trace.testing import FakeAnthropic, FakeCohere, FakeMistral, FakeOpenAI

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import

PROMPT = [{"role": "user", "content": "Weather in Paris?"}]


@dataclass(frozen=True)
class ProviderCall:
    """One provider: its fake server, the call, and what its LLM span must say."""

    key: str
    fake: Callable[[], Any]
    call: Callable[[Any], str]  # given the started fake server, makes one chat call, returns the text
    span: str
    provider: str
    model: str  # the priced model
    usage: tuple[int, int]
    request_model: str | None = None  # what the call names, when not ``model`` (LiteLLM's "vendor/model")


def _openai(fake: Any) -> str:
    import openai

    with openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    return str(reply.choices[0].message.content)


def _anthropic(fake: Any) -> str:
    import anthropic

    with anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0) as client:
        reply = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=PROMPT)
    return str(reply.content[0].text)


def _cohere(fake: Any) -> str:
    import cohere

    client = cohere.ClientV2(api_key="k", base_url=fake.base_url, max_retries=0)
    reply = client.chat(model="command-a-03-2025", messages=PROMPT)
    return str(reply.message.content[0].text)


def _mistral(fake: Any) -> str:
    from mistralai.client import Mistral

    with Mistral(api_key="k", server_url=fake.base_url) as client:
        reply = client.chat.complete(model="mistral-small-latest", messages=PROMPT)
    return str(reply.choices[0].message.content)


def _litellm(fake: Any) -> str:
    import litellm

    reply = litellm.completion(
        model="anthropic/claude-sonnet-4-6",
        messages=PROMPT,
        api_base=fake.base_url,
        api_key="k",
        max_retries=0,
    )
    return str(reply.choices[0].message.content)


CALLS = [
    ProviderCall(
        "openai", FakeOpenAI, _openai, "openai.chat.completions", "openai", "gpt-4o-mini", (100, 10)
    ),
    ProviderCall(
        "anthropic",
        FakeAnthropic,
        _anthropic,
        "anthropic.messages",
        "anthropic",
        "claude-haiku-4-5",
        (200, 20),
    ),
    ProviderCall("cohere", FakeCohere, _cohere, "cohere.chat", "cohere", "command-a-03-2025", (300, 30)),
    ProviderCall(
        "mistral", FakeMistral, _mistral, "mistral.chat", "mistral_ai", "mistral-small-latest", (400, 40)
    ),
    ProviderCall(
        "litellm",
        FakeAnthropic,
        _litellm,
        "litellm.completion",
        "anthropic",
        "claude-sonnet-4-6",
        (500, 50),
        "anthropic/claude-sonnet-4-6",
    ),
]
