"""Shared fixtures of the provider tests: fake servers and SDK clients pointed at them."""

from __future__ import annotations

import pytest

from trodo_trace._internal.core.pricing import PricingTable
from trodo_trace.testing import FakeAnthropic, FakeOpenAI

LLM_KEYS = (
    "trodo.run.id",
    "openinference.span.kind",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "llm.provider",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.request.temperature",
    "gen_ai.request.max_tokens",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "llm.token_count.total",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.prompt_details.cache_write",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.id",
    "trodo.llm.cost",
    "error.type",
    "http.response.status_code",
    "trodo.llm.stream.closed_early",
)
RUN_KEYS = ("trodo.run.total_tokens_in", "trodo.run.total_tokens_out", "trodo.run.total_cost")


def cost(
    model: str, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
) -> float:
    value = PricingTable.bundled().cost(
        model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    assert value is not None
    return value


def messages_of(attributes: dict, direction: str = "input") -> list[dict]:
    """The OpenInference message attributes of one direction, regrouped per message."""
    prefix = f"llm.{direction}_messages."
    grouped: dict[int, dict] = {}
    for key, value in attributes.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix) :].partition(".message.")
            grouped.setdefault(int(index), {})[rest] = value
    return [grouped[i] for i in sorted(grouped)]


@pytest.fixture
def fake_openai():
    """A fake OpenAI server for one test."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_anthropic():
    """A fake Anthropic server for one test."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def openai_client(fake_openai):
    import openai

    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def async_openai_client(fake_openai):
    import openai

    return openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=0)


@pytest.fixture
def anthropic_client(fake_anthropic):
    import anthropic

    client = anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="test-key", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def async_anthropic_client(fake_anthropic):
    import anthropic

    return anthropic.AsyncAnthropic(base_url=fake_anthropic.base_url, api_key="test-key", max_retries=0)
