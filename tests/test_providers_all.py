"""One agent run that calls every instrumented provider (OpenAI, Anthropic, Cohere, Mistral, and
LiteLLM to an Anthropic-format model), each against its fake server: the whole tree and the run's
rollups. Driven by ``provider_calls.CALLS``: a new provider is one more entry there."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from provider_calls import CALLS
from provider_fakes import cost

import trodo_trace as trodo
from trodo_trace.testing import capture

KEYS = (
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
)


def test_one_run_calls_every_provider():
    """Each provider call is one LLM child of the agent with its provider, model and tokens; the
    run's token and cost rollups are the sums, each call counted once."""
    with ExitStack() as stack:
        fakes = {entry.key: stack.enter_context(entry.fake()) for entry in CALLS}
        for entry in CALLS:
            fakes[entry.key].reply(f"Answer from {entry.key}.", usage=entry.usage)

        @trodo.agent("every-provider")
        def bot():
            return [entry.call(fakes[entry.key]) for entry in CALLS]

        with capture(deterministic=True) as traces:
            assert bot() == [f"Answer from {entry.key}." for entry in CALLS]
        for entry in CALLS:
            assert len(fakes[entry.key].requests) == 1, entry.key

    expected_cost = sum(cost(entry.model, *entry.usage) for entry in CALLS)
    assert traces.tree(
        (*KEYS, "trodo.run.total_tokens_in", "trodo.run.total_tokens_out", "trodo.run.total_cost")
    ) == [
        {
            "name": "every-provider",
            "kind": "run",
            "status": "OK",
            "attributes": {
                "trodo.run.total_tokens_in": sum(entry.usage[0] for entry in CALLS),
                "trodo.run.total_tokens_out": sum(entry.usage[1] for entry in CALLS),
                "trodo.run.total_cost": pytest.approx(expected_cost),
            },
            "children": [
                {
                    "name": entry.span,
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.provider.name": entry.provider,
                        "gen_ai.request.model": entry.request_model or entry.model,
                        "gen_ai.usage.input_tokens": entry.usage[0],
                        "gen_ai.usage.output_tokens": entry.usage[1],
                    },
                    "children": [],
                }
                for entry in CALLS
            ],
        }
    ]
    root = traces.runs()[0].attributes
    assert "trodo.run.cost_incomplete" not in root or root["trodo.run.cost_incomplete"] is False
    for entry in CALLS:
        span = traces.by_name(entry.span)
        assert span.attributes["trodo.llm.cost"] == pytest.approx(cost(entry.model, *entry.usage)), entry.key
        assert span.attributes["llm.input_messages.0.message.content"] == "Weather in Paris?", entry.key
        assert span.attributes["llm.output_messages.0.message.content"] == f"Answer from {entry.key}.", (
            entry.key
        )


def test_switch_names_the_new_providers(monkeypatch):
    """instrument=[...] / TRODO_INSTRUMENT name cohere, mistral and litellm; the explicit functions are public."""
    import cohere  # noqa: F401  (imported: the patches go in at init)
    import litellm  # noqa: F401
    import mistralai.client  # noqa: F401

    from trodo_trace.integrations import providers

    trodo.init(instrument=["cohere", "mistral", "litellm"])
    assert providers.instrumented() == {"cohere", "mistral", "litellm"}
    monkeypatch.setenv("TRODO_INSTRUMENT", "mistral")
    trodo.init()
    assert providers.instrumented() == {"mistral"}
    with pytest.raises(ValueError, match=r"unknown provider 'mistralai'; supported: .*mistral"):
        trodo.init(instrument=["mistralai"])
    trodo.init(instrument=False)
    trodo.instrument_cohere()
    trodo.instrument_mistral()
    trodo.instrument_litellm()
    assert providers.instrumented() == {"cohere", "mistral", "litellm"}
    assert {"instrument_cohere", "instrument_mistral", "instrument_litellm"} <= set(trodo.__all__)
