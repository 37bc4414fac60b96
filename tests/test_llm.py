"""LLM spans: model, provider, temperature, usage from common return shapes, cost."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from langchain_core.messages import AIMessage

import trodo_trace as trodo
from trodo_trace.testing import capture

USAGE_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.request.temperature",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "llm.model_name",
    "llm.provider",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.total",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.prompt_details.cache_write",
    "llm.token_count.completion_details.reasoning",
    "trodo.llm.cost",
)


def _llm_attributes(result, **decorator):
    @trodo.llm(**decorator)
    def call(prompt):
        return result

    with capture() as traces:
        call("hi")
    span = traces.by_name("call")
    return {k: span.attributes[k] for k in USAGE_KEYS if k in span.attributes}


def test_openai_object_shape():
    """An OpenAI ChatCompletion-like object gives usage, cached and reasoning tokens, response model."""
    result = SimpleNamespace(
        model="gpt-4o-2024-08-06",
        usage=SimpleNamespace(
            prompt_tokens=1000,
            completion_tokens=200,
            prompt_tokens_details=SimpleNamespace(cached_tokens=600),
            completion_tokens_details=SimpleNamespace(reasoning_tokens=50),
        ),
    )
    assert _llm_attributes(result, model="gpt-4o", provider="openai", temperature=0.3) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.temperature": 0.3,
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200,
        "llm.model_name": "gpt-4o",
        "llm.provider": "openai",
        "llm.token_count.prompt": 1000,
        "llm.token_count.completion": 200,
        "llm.token_count.total": 1200,
        "llm.token_count.prompt_details.cache_read": 600,
        "llm.token_count.completion_details.reasoning": 50,
        "trodo.llm.cost": pytest.approx((400 * 2.5 + 600 * 1.25 + 200 * 10) / 1e6),
    }


def test_openai_dict_shape_and_model_from_response():
    """A dict response with usage and model fills request model when none was declared."""
    attributes = _llm_attributes(
        {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    )
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.usage.input_tokens"] == 10
    assert attributes["trodo.llm.cost"] == pytest.approx((10 * 0.15 + 5 * 0.6) / 1e6)


def test_anthropic_shape_counts_cache_reads_and_writes():
    """Anthropic usage: input_tokens excludes cache reads/writes, which are added and priced apart."""
    result = SimpleNamespace(
        model="claude-3-5-haiku-20241022",
        usage=SimpleNamespace(
            input_tokens=100, output_tokens=10, cache_read_input_tokens=1000, cache_creation_input_tokens=200
        ),
    )
    attributes = _llm_attributes(result, provider="anthropic")
    assert attributes["gen_ai.usage.input_tokens"] == 1300
    assert attributes["llm.token_count.prompt_details.cache_read"] == 1000
    assert attributes["llm.token_count.prompt_details.cache_write"] == 200
    assert attributes["trodo.llm.cost"] == pytest.approx((100 * 0.8 + 1000 * 0.08 + 200 * 1.0 + 10 * 4) / 1e6)


def test_langchain_ai_message_usage_metadata():
    """A LangChain AIMessage's usage_metadata and response_metadata are read."""
    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": 50,
            "output_tokens": 7,
            "total_tokens": 57,
            "input_token_details": {"cache_read": 20},
            "output_token_details": {"reasoning": 3},
        },
        response_metadata={"model_name": "gpt-4.1-mini"},
    )
    attributes = _llm_attributes(message)
    assert attributes["gen_ai.response.model"] == "gpt-4.1-mini"
    assert attributes["gen_ai.usage.input_tokens"] == 50
    assert attributes["llm.token_count.prompt_details.cache_read"] == 20
    assert attributes["llm.token_count.completion_details.reasoning"] == 3
    assert "trodo.llm.cost" in attributes


def test_gemini_shape():
    """A Gemini usage_metadata block counts thoughts as output."""
    result = SimpleNamespace(
        model_version="gemini-2.5-flash",
        usage_metadata=SimpleNamespace(
            prompt_token_count=40,
            candidates_token_count=10,
            thoughts_token_count=5,
            cached_content_token_count=None,
        ),
    )
    attributes = _llm_attributes(result)
    assert attributes["gen_ai.usage.input_tokens"] == 40
    assert attributes["gen_ai.usage.output_tokens"] == 15
    assert attributes["gen_ai.response.model"] == "gemini-2.5-flash"


def test_model_and_temperature_from_call_arguments_and_defaults():
    """model/temperature come from the call's keyword arguments, else the parameter defaults."""

    @trodo.llm(provider="openai")
    def chat(prompt, model="gpt-4o-mini", temperature=0.7):
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    with capture() as traces:
        chat("a")
        chat("b", model="gpt-4.1", temperature=0.0)
    first, second = traces.spans
    assert first.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert first.attributes["gen_ai.request.temperature"] == 0.7
    assert second.attributes["gen_ai.request.model"] == "gpt-4.1"
    assert second.attributes["gen_ai.request.temperature"] == 0.0
    assert json.loads(second.attributes["input.value"]) == {
        "prompt": "b",
        "model": "gpt-4.1",
        "temperature": 0.0,
    }


def test_unknown_model_gets_no_cost_and_run_marks_cost_incomplete():
    """An unknown model has no trodo.llm.cost (never a wrong 0); the run says its cost is incomplete."""

    @trodo.llm(model="my-private-model")
    def call():
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 10}}

    @trodo.agent
    def agent():
        call()

    with capture() as traces:
        agent()
    assert "trodo.llm.cost" not in traces.by_name("call").attributes
    root = traces.runs()[0]
    assert "trodo.run.total_cost" not in root.attributes
    assert root.attributes["trodo.run.cost_incomplete"] is True
    assert root.attributes["trodo.run.total_tokens_in"] == 10


def test_pricing_override_from_init():
    """init(pricing=...) prices models the bundled table does not know and overrides known ones."""
    trodo.init(
        pricing={"my-private-model": {"input": 1.0, "output": 2.0}, "gpt-4o": {"input": 100, "output": 100}}
    )

    @trodo.llm
    def call(model):
        return {"usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}}

    with capture() as traces:
        call(model="my-private-model")
        call(model="gpt-4o")
    assert [s.attributes["trodo.llm.cost"] for s in traces.spans] == [3.0, 200.0]


def test_usage_is_not_extracted_from_unknown_shapes():
    """A return value without usage leaves token attributes out."""
    attributes = _llm_attributes("plain text", model="gpt-4o")
    assert "gen_ai.usage.input_tokens" not in attributes
    assert "trodo.llm.cost" not in attributes


def test_streaming_llm_records_time_to_first_token_and_final_usage():
    """A streamed llm generator records TTFT and the usage of its last chunk."""

    @trodo.llm(model="gpt-4o-mini")
    def stream(prompt):
        yield SimpleNamespace(choices=["a"], usage=None)
        yield SimpleNamespace(choices=["b"], usage=SimpleNamespace(prompt_tokens=3, completion_tokens=2))

    with capture(deterministic=True) as traces:
        assert len(list(stream("x"))) == 2
    span = traces.by_name("stream")
    assert span.attributes["trodo.llm.time_to_first_token_ms"] == 1.0
    assert span.attributes["gen_ai.usage.input_tokens"] == 3
    assert span.attributes["gen_ai.usage.output_tokens"] == 2


def test_retrieval_documents_from_common_shapes():
    """Retrievals record id, content and score of LangChain-style, tuple and string results."""
    from langchain_core.documents import Document

    @trodo.retrieval
    def search(query):
        return [
            (Document(page_content="alpha", metadata={"id": "a"}), 0.9),
            Document(id="b", page_content="beta"),
            "gamma",
        ]

    with capture() as traces:
        search("q")
    attributes = traces.by_name("search").attributes
    docs = {k: v for k, v in attributes.items() if k.startswith("retrieval.documents.")}
    assert docs == {
        "retrieval.documents.0.document.id": "a",
        "retrieval.documents.0.document.content": "alpha",
        "retrieval.documents.0.document.score": 0.9,
        "retrieval.documents.0.document.metadata": '{"id":"a"}',
        "retrieval.documents.1.document.id": "b",
        "retrieval.documents.1.document.content": "beta",
        "retrieval.documents.2.document.content": "gamma",
    }
    assert attributes["trodo.retrieval.result_count"] == 3
    assert attributes["input.value"] == '{"query":"q"}'
    assert attributes["openinference.span.kind"] == "RETRIEVER"
