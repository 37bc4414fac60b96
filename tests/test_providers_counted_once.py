"""Counted once: a provider call inside an LLM span of @trodo.llm, LangChain (langchain-openai) or
LlamaIndex (llama-index-llms-openai) merges into that span — one LLM row, tokens and cost once."""

from __future__ import annotations

import json

import openai
import pytest
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from provider_fakes import cost, fake_openai, messages_of, openai_client  # noqa: F401
from test_llamaindex_models import no_network_fixture  # noqa: F401  (fixture)

import trodo_trace as trodo
from trodo_trace.callbacks.langchain import TrodoCallbackHandler
from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler
from trodo_trace.testing import capture

ROLLUP = (
    "trodo.run.total_tokens_in",
    "trodo.run.total_tokens_out",
    "trodo.run.total_cost",
    "trodo.run.span_count",
)
MERGED = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "trodo.llm.provider_calls")


def _rollup(traces) -> dict:
    root = traces.runs()[0]
    return {k: root.attributes[k] for k in ROLLUP}


def test_llm_decorator_returning_the_response(openai_client, fake_openai):
    """@trodo.llm around an openai call: one LLM span (the decorator's), usage counted once."""
    fake_openai.reply("hi", usage=(100, 20))

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt):
        return openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )

    @trodo.agent("bot")
    def bot():
        return complete("hello").choices[0].message.content

    with capture(deterministic=True) as traces:
        bot()
    assert traces.tree(MERGED) == [
        {
            "name": "bot",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "complete",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.usage.input_tokens": 100,
                        "gen_ai.usage.output_tokens": 20,
                        "trodo.llm.provider_calls": 1,
                    },
                    "children": [],
                }
            ],
        }
    ]
    assert _rollup(traces) == {
        "trodo.run.total_tokens_in": 100,
        "trodo.run.total_tokens_out": 20,
        "trodo.run.total_cost": pytest.approx(cost("gpt-4o-mini", 100, 20)),
        "trodo.run.span_count": 2,
    }


def test_llm_decorator_filled_from_the_call(openai_client, fake_openai):
    """@trodo.llm returning text only: the merged call fills model, usage, messages and response id."""
    fake_openai.reply("Paris.", usage=(30, 2))

    @trodo.llm
    def ask(question):
        reply = openai_client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": question}], temperature=0
        )
        return reply.choices[0].message.content

    with capture() as traces:
        assert ask("Capital of France?") == "Paris."
    span = traces.by_name("ask")
    assert [s.name for s in traces.spans] == ["ask"]
    assert {
        k: span.attributes.get(k)
        for k in ("gen_ai.request.model", "gen_ai.response.id", "gen_ai.provider.name")
    } == {
        "gen_ai.request.model": "gpt-4.1",
        "gen_ai.response.id": "chatcmpl-fake",
        "gen_ai.provider.name": "openai",
    }
    assert span.attributes["trodo.llm.cost"] == pytest.approx(cost("gpt-4.1", 30, 2))
    assert messages_of(span.attributes, "output") == [{"role": "assistant", "content": "Paris."}]
    assert json.loads(span.attributes["input.value"]) == {
        "question": "Capital of France?"
    }  # the decorator's own


def test_two_calls_in_one_llm_span_add_up(openai_client, fake_openai):
    """Two provider calls merged into one LLM span (a retry loop, say) add their usage."""
    fake_openai.reply("a", usage=(10, 1))
    fake_openai.reply("b", usage=(20, 2))

    @trodo.llm
    def twice():
        for _ in range(2):
            openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        return "done"

    with capture() as traces:
        twice()
    span = traces.by_name("twice")
    assert {k: span.attributes[k] for k in MERGED} == {
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 3,
        "trodo.llm.provider_calls": 2,
    }


def test_error_inside_llm_span(openai_client, fake_openai):
    """A failing call merged into an LLM span: the decorator records the SDK's error once, with the status."""
    fake_openai.fail(429, retry_after=0)

    @trodo.llm
    def complete():
        return openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    with capture() as traces:
        with pytest.raises(openai.RateLimitError):
            complete()
    span = traces.by_name("complete")
    assert (span.status, span.attributes["error.type"], span.attributes["http.response.status_code"]) == (
        "ERROR",
        "openai.RateLimitError",
        429,
    )
    assert len(traces.spans) == 1


def test_tool_and_function_spans_do_not_merge(openai_client):
    """A call inside a tool (not an LLM span) is its own LLM child of the tool."""

    @trodo.tool
    def summarise():
        return openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    with capture(deterministic=True) as traces:
        summarise()
    assert traces.tree() == [
        {
            "name": "summarise",
            "kind": "tool",
            "status": "OK",
            "children": [{"name": "openai.chat.completions", "kind": "llm", "status": "OK", "children": []}],
        }
    ]


@pytest.mark.usefixtures("no_network")
def test_langchain_chat_openai(fake_openai):
    """langchain-openai's ChatOpenAI (invoke and stream): the handler's LLM span, counted once."""
    fake_openai.reply("From LangChain.", usage=(40, 6))
    fake_openai.reply("Streamed from LangChain.", usage=(41, 7))
    model = ChatOpenAI(
        model="gpt-4o-mini", base_url=fake_openai.base_url, api_key="k", max_retries=0, stream_usage=True
    )
    handler = TrodoCallbackHandler()

    @trodo.agent("lc-bot")
    def bot():
        first = model.invoke("Hello?", config={"callbacks": [handler]}).content
        second = "".join(chunk.content for chunk in model.stream("Again?", config={"callbacks": [handler]}))
        return first, second

    with capture(deterministic=True) as traces:
        assert bot() == ("From LangChain.", "Streamed from LangChain.")
    assert traces.tree(MERGED) == [
        {
            "name": "lc-bot",
            "kind": "run",
            "status": "OK",
            "attributes": {},
            "children": [
                {
                    "name": "ChatOpenAI",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.usage.input_tokens": 40,
                        "gen_ai.usage.output_tokens": 6,
                        "trodo.llm.provider_calls": 1,
                    },
                    "children": [],
                },
                {
                    "name": "ChatOpenAI",
                    "kind": "llm",
                    "status": "OK",
                    "attributes": {
                        "gen_ai.usage.input_tokens": 41,
                        "gen_ai.usage.output_tokens": 7,
                        "trodo.llm.provider_calls": 1,
                    },
                    "children": [],
                },
            ],
        }
    ]
    assert _rollup(traces) == {
        "trodo.run.total_tokens_in": 81,
        "trodo.run.total_tokens_out": 13,
        "trodo.run.total_cost": pytest.approx(cost("gpt-4o-mini", 81, 13)),
        "trodo.run.span_count": 3,
    }
    first = traces.spans[0]
    assert messages_of(first.attributes) == [{"role": "user", "content": "Hello?"}]  # filled from the call
    assert "llm.invocation_parameters" in first.attributes


@pytest.mark.usefixtures("no_network")
def test_llamaindex_openai(fake_openai):
    """llama-index-llms-openai's OpenAI (chat and complete): the handler's LLM spans, counted once."""
    # llama-index-llms-openai needs openai<3: skipped where a newer openai is installed
    LlamaOpenAI = pytest.importorskip("llama_index.llms.openai").OpenAI
    fake_openai.reply("From LlamaIndex.", usage=(50, 8))
    fake_openai.reply("Completed.", usage=(51, 9))
    llm = LlamaOpenAI(model="gpt-4o-mini", api_base=fake_openai.base_url, api_key="k", max_retries=0)
    handler = TrodoLlamaIndexHandler().attach()

    @trodo.agent("li-bot")
    def bot():
        chat = llm.chat([ChatMessage(role="user", content="Hello?")]).message.content
        return chat, llm.complete("Complete me").text

    try:
        with capture() as traces:
            assert bot() == ("From LlamaIndex.", "Completed.")
    finally:
        handler.detach()
    llm_spans = [s for s in traces.spans if s.kind == "llm"]
    assert [s.attributes.get("trodo.llm.provider_calls") for s in llm_spans] == [1, 1]
    assert not any(s.name.startswith("openai.") for s in traces.spans)
    assert _rollup(traces)["trodo.run.total_tokens_in"] == 101
    assert _rollup(traces)["trodo.run.total_tokens_out"] == 17


def test_llamaindex_embedding_backed_by_openai(fake_openai):
    """An openai embeddings call inside a LlamaIndex embedding span merges into it: one EMBEDDING span,
    its tokens counted once in the run."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)

    class OpenAIBacked(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return client.embeddings.create(model="text-embedding-3-small", input=query).data[0].embedding

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_query_embedding(text)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    fake_openai.reply(usage=(7, 0))
    handler = TrodoLlamaIndexHandler().attach()

    @trodo.agent("embed-bot")
    def bot():
        return OpenAIBacked(model_name="text-embedding-3-small").get_query_embedding("hello world")

    try:
        with capture() as traces:
            assert len(bot()) == 8
    finally:
        handler.detach()
        client.close()
    assert not any(s.name == "openai.embeddings" for s in traces.spans)
    (embedding,) = [s for s in traces.spans if s.attributes.get("openinference.span.kind") == "EMBEDDING"]
    assert embedding.attributes["trodo.llm.provider_calls"] == 1
    root = traces.runs()[0]
    assert root.attributes["trodo.run.total_tokens_in"] == embedding.attributes["gen_ai.usage.input_tokens"]
