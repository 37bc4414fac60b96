"""OpenAI-compatible hosts: an `openai` client's base_url names the provider (Groq, Together, DeepSeek,
OpenRouter, Fireworks, xAI, Ollama, LM Studio, vLLM, Azure), its models are priced where the table
knows them, and an unknown model leaves the run's cost incomplete."""

from __future__ import annotations

import warnings

import openai
import pytest
from provider_fakes import cost, fake_openai  # noqa: F401

import trodo_trace as trodo
from trodo_trace._internal.core.pricing import PricingTable
from trodo_trace.integrations.providers.hosts import provider_for_url
from trodo_trace.testing import capture

#: A local model the pricing table does not know (on purpose: its run's cost stays incomplete).
UNPRICED = "qwen3-8b-awq"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", ("openai", "openai")),
        ("https://api.groq.com/openai/v1", ("groq", "groq")),
        ("https://api.together.xyz/v1", ("together_ai", "together_ai")),
        ("https://api.deepseek.com", ("deepseek", "deepseek")),
        ("https://openrouter.ai/api/v1", ("openrouter", "openrouter")),
        ("https://api.fireworks.ai/inference/v1", ("fireworks_ai", "fireworks_ai")),
        ("https://api.x.ai/v1", ("x_ai", "xai")),
        ("https://my-resource.openai.azure.com/openai/deployments/gpt-4o", ("azure.ai.openai", "azure")),
        ("https://my-hub.services.ai.azure.com/models", ("azure.ai.inference", "azure")),
        ("http://localhost:11434/v1", ("ollama", "ollama")),
        ("http://ollama.lan:11434/v1", ("ollama", "ollama")),
        ("http://127.0.0.1:1234/v1", ("lm_studio", "lm_studio")),
        ("http://10.0.0.5:1234/v1", ("openai", "openai")),  # port 1234 elsewhere is not assumed LM Studio
        ("http://localhost:8000/v1", ("openai", "openai")),  # vLLM has no port of its own: name it
        ("https://llm.internal.example/v1", ("openai", "openai")),
        ("https://API.GROQ.COM/openai/v1", ("groq", "groq")),
        ("not a url", ("openai", "openai")),
        ("http://[::1", ("openai", "openai")),
        (None, ("openai", "openai")),
    ],
)
def test_provider_from_the_base_url(url, expected):
    """Each known host (or parent domain, or default port) names its provider; anything else is openai."""
    assert provider_for_url(url) == expected


def test_named_hosts_win_over_the_table():
    """provider_hosts entries, by host:port or by host, win over the built-in table."""
    extra = {"gpu-box:8000": "vllm", "api.groq.com": "my-groq-proxy", "azure-gw": "azure.ai.openai"}
    assert provider_for_url("http://gpu-box:8000/v1", extra) == ("vllm", "vllm")
    assert provider_for_url("http://gpu-box:9000/v1", extra) == ("openai", "openai")
    assert provider_for_url("https://api.groq.com/openai/v1", extra) == ("my-groq-proxy", "my-groq-proxy")
    assert provider_for_url("https://azure-gw/v1", extra) == ("azure.ai.openai", "azure")


def _client(fake) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0)


def test_groq_call_is_named_and_priced(fake_openai):
    """A call to a host named groq: provider groq on the span, its model priced, the run's cost complete."""
    trodo.init(provider_hosts={fake_openai.url.removeprefix("http://"): "groq"})
    client = _client(fake_openai)
    fake_openai.reply("Hi.", usage=(40, 8))

    @trodo.agent("fast-bot")
    def bot():
        return client.chat.completions.create(
            model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": "hi"}]
        )

    with capture(deterministic=True) as traces:
        bot()
    client.close()
    expected = cost("llama-3.3-70b-versatile", 40, 8)
    keys = (
        "gen_ai.provider.name",
        "llm.provider",
        "trodo.llm.cost",
        "trodo.run.total_cost",
        "trodo.run.cost_incomplete",
    )
    assert traces.tree(keys) == [
        {
            "name": "fast-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {"trodo.run.total_cost": pytest.approx(expected)},
            "children": [
                {
                    "name": "openai.chat.completions",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.provider.name": "groq",
                        "llm.provider": "groq",
                        "trodo.llm.cost": pytest.approx(expected),
                    },
                    "children": [],
                }
            ],
        }
    ]


def test_unknown_local_model_leaves_the_cost_incomplete(fake_openai):
    """A local model the table does not know (through a named vLLM host): tokens counted, no cost,
    the run marked cost_incomplete; a priced call beside it still adds its cost."""
    assert PricingTable.bundled().lookup(UNPRICED) is None
    trodo.init(provider_hosts=f"{fake_openai.url.removeprefix('http://')}=vllm")
    client = _client(fake_openai)
    fake_openai.reply("Local.", usage=(12, 3))

    @trodo.agent("local-bot")
    def bot():
        client.chat.completions.create(model=UNPRICED, messages=[{"role": "user", "content": "hi"}])
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])

    with capture() as traces:
        bot()
    client.close()
    local, priced = [span for span in traces.spans if span.kind == "llm"]
    assert (local.attributes["gen_ai.provider.name"], local.attributes["gen_ai.usage.input_tokens"]) == (
        "vllm",
        12,
    )
    assert "trodo.llm.cost" not in local.attributes
    run = traces.runs()[0].attributes
    assert run["trodo.run.cost_incomplete"] is True
    assert run["trodo.run.total_tokens_in"] == 22
    assert run["trodo.run.total_cost"] == pytest.approx(cost("deepseek-chat", 10, 5))
    assert priced.attributes["trodo.llm.cost"] == pytest.approx(cost("deepseek-chat", 10, 5))


def test_bad_provider_hosts_values():
    """A bad provider_hosts argument raises naming the option; a bad environment value warns and is ignored."""
    with pytest.raises(ValueError, match=r"provider_hosts: entry 1 .* is not 'host\[:port\]=provider'"):
        trodo.init(provider_hosts="gpu-box:8000")
    with pytest.raises(
        ValueError, match=r"provider_hosts: the provider of 'gpu-box' must be a non-empty string"
    ):
        trodo.init(provider_hosts={"gpu-box": ""})
    with pytest.raises(TypeError, match="provider_hosts must be a mapping"):
        trodo.init(provider_hosts=3)
    from trodo_trace._internal.config import _warned_env, resolve

    _warned_env.discard("TRODO_PROVIDER_HOSTS")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = resolve({}, {"TRODO_PROVIDER_HOSTS": "=groq"})
    assert config.provider_hosts is None
    assert "TRODO_PROVIDER_HOSTS" in str(caught[0].message)


def test_each_client_keeps_its_own_provider(fake_openai):
    """The provider read from a client's base URL is remembered per URL, never mixed up between
    clients: two hosts called in turn, an Azure client on the same server, a client whose base_url
    is changed, and new provider_hosts after a second init each give the right provider."""
    from trodo_trace.testing import FakeOpenAI

    host = fake_openai.url.removeprefix("http://")
    with FakeOpenAI() as other:
        other_host = other.url.removeprefix("http://")
        trodo.init(provider_hosts={host: "groq"})
        named, plain = _client(fake_openai), _client(other)
        azure = openai.AzureOpenAI(
            azure_endpoint=fake_openai.url, api_key="k", api_version="2024-10-21", max_retries=0
        )

        def providers(*clients):
            with capture() as traces:
                for client in clients:
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
            return [
                (s.attributes["gen_ai.provider.name"], s.attributes["llm.provider"]) for s in traces.spans
            ]

        groq, default, azure_names = ("groq", "groq"), ("openai", "openai"), ("azure.ai.openai", "azure")
        assert providers(named, plain, named, azure, plain) == [groq, default, groq, azure_names, default]
        plain.base_url = fake_openai.base_url  # now sent to the named host
        assert providers(plain, named) == [groq, groq]
        plain.base_url = other.base_url
        trodo.init(provider_hosts={other_host: "vllm"})  # new names: nothing remembered from before
        assert providers(plain, named, azure) == [("vllm", "vllm"), default, azure_names]
        for client in (named, plain, azure):
            client.close()
